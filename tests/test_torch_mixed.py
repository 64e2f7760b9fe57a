"""pylstm.torch under mixed precision (issue 26, item 7): under torch.autocast("cpu") and with bfloat16 or float16
parameters, every module runs forward and backward with the output dtype torch.nn gives, and its outputs and
gradients are at least as close to the float32 result as torch.nn's own at that dtype (pylstm computes in float32
from the rounded inputs and rounds the outputs)."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import pylstm.torch as pt  # noqa: E402

CLASSES = [("LSTM", True), ("GRU", False), ("RNN", False), ("LSTMCell", True), ("GRUCell", False),
           ("RNNCell", False)]
HALF = [torch.bfloat16, torch.float16]


def _pair(name):
    torch.manual_seed(0)
    ours = getattr(pt, name)(6, 8)
    theirs = getattr(nn, name)(6, 8)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _input(name, dtype=torch.float32):
    torch.manual_seed(1)
    return torch.randn(*((3, 6) if name.endswith("Cell") else (5, 3, 6)), dtype=dtype)


def _out(result):
    """The output (sequence modules) or the new h (cells) as one tensor, and every tensor returned."""
    if isinstance(result, tuple):
        first, rest = result
        flat = [first, *(rest if isinstance(rest, tuple) else (rest,))]
        return first, flat
    return result, [result]


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    scale = b.norm()  # a cell's W_hh gradient is exactly 0 from a zero state: then the absolute error
    return float((a - b).norm() / (scale if scale > 0 else 1))


def _run(module, x):
    """(output, gradients of the parameters) of sum(output²) / 2."""
    module.zero_grad()
    out, flat = _out(module(x))
    (out.float() ** 2).sum().div(2).backward()
    return out, flat, [p.grad for p in module.parameters()]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name, two_states", CLASSES)
def test_under_autocast_the_output_dtype_and_accuracy_are_torchs(name, two_states, dtype):
    ours, theirs = _pair(name)
    x = _input(name)
    ref, _, ref_grads = _run(theirs, x)  # float32, outside autocast
    with torch.autocast("cpu", dtype=dtype):
        out, flat, grads = _run(ours, x)
    try:
        with torch.autocast("cpu", dtype=dtype):
            t_out, t_flat, t_grads = _run(theirs, x)
    except RuntimeError:  # torch.nn's LSTM under float16 autocast: "could not create a primitive descriptor"
        assert name == "LSTM" and dtype == torch.float16
        t_out = None
    if t_out is not None:
        assert [t.dtype for t in flat] == [t.dtype for t in t_flat]
        assert _rel(out, ref) <= max(_rel(t_out, ref), 1e-6) * 1.01
        for g, tg, rg in zip(grads, t_grads, ref_grads):
            assert g.dtype == torch.float32 and _rel(g, rg) <= max(_rel(tg, rg), 1e-6) * 1.01
    else:
        assert all(t.dtype == dtype for t in flat)  # as torch's LSTM does under bfloat16
    assert _rel(out, ref) < (1e-2 if dtype == torch.bfloat16 else 2e-3)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name, two_states", CLASSES)
def test_16_bit_parameters_train_like_torchs(name, two_states, dtype):
    ours, theirs = _pair(name)
    x = _input(name)
    ref, _, ref_grads = _run(theirs, x)  # float32
    ours.to(dtype)
    theirs.to(dtype)
    out, flat, grads = _run(ours, x.to(dtype))
    t_out, t_flat, t_grads = _run(theirs, x.to(dtype))
    assert [t.dtype for t in flat] == [t.dtype for t in t_flat] == [dtype] * len(flat)
    assert _rel(out, ref) <= _rel(t_out, ref) * 1.01 + 1e-3
    for g, tg, rg in zip(grads, t_grads, ref_grads):
        assert g.dtype == dtype and _rel(g, rg) <= _rel(tg, rg) * 1.01 + 1e-3


def test_autocast_leaves_float64_alone_and_16_bit_modules_need_their_inputs():
    m = pt.LSTM(4, 5).double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m(torch.randn(3, 2, 4, dtype=torch.float64))[0].dtype == torch.float64
    m = pt.GRU(4, 5, dtype=torch.bfloat16)
    assert m.weight_ih_l0.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float32, but the parameters are torch.bfloat16"):
        m(torch.randn(3, 2, 4))
    # a packed sequence under autocast
    from torch.nn.utils.rnn import pack_padded_sequence

    m = pt.LSTM(4, 5)
    packed = pack_padded_sequence(torch.randn(6, 3, 4), [6, 4, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = m(packed)
    assert out.data.dtype == h.dtype == c.dtype == torch.bfloat16
