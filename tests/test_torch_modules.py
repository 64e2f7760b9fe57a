"""pylstm.torch's modules against torch.nn's: outputs and every gradient on random configurations, gradcheck,
training, serialisation, torch.compile, and the errors for what the kernels do not run (skipped without torch)."""

import copy
import dataclasses
import io
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pt = pytest.importorskip("pylstm.torch")
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

import pylstm  # noqa: E402
from pylstm import _cells  # noqa: E402

# torch.nn.LSTM warns that oneDNN lacks projections (and falls back); that is torch's business, not a failure here.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

TOL = {torch.float64: 1e-9, torch.float32: 2e-4}
KINDS = {  # name: (class name, constructor keywords)
    "lstm": ("LSTM", {}),
    "lstmp": ("LSTM", {"proj_size": 2}),
    "gru": ("GRU", {}),
    "rnn-tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn-relu": ("RNN", {"nonlinearity": "relu"}),
}


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)


def random_config(seed):
    r = np.random.default_rng(seed)
    return dict(T=int(r.integers(1, 7)), N=int(r.integers(1, 5)), I=int(r.integers(1, 9)), H=int(r.integers(3, 12)),
                L=int(r.integers(1, 4)), bi=bool(r.integers(2)), bias=bool(r.random() < 0.8),
                layout=str(r.choice(["seq", "batch_first", "unbatched", "packed"])), given=bool(r.integers(2)))


def twins(kind, dt, I, H, L, bi, bias, batch_first):
    """torch.nn's module and pylstm.torch's, with the same weights (from the same generator state)."""
    name, kw = KINDS[kind]
    kw = dict(kw, bias=bias, batch_first=batch_first, bidirectional=bi, dtype=dt)
    torch.manual_seed(7)
    theirs = getattr(torch.nn, name)(I, H, L, **kw)
    torch.manual_seed(7)
    ours = getattr(pt, name)(I, H, L, **kw)
    return theirs, ours


def run(module, x, hx, lstm, lengths=None):
    """Output, final states and the gradients of a fixed random functional of both, for x, hx and every parameter
    (None for those that do not require a gradient)."""
    module.zero_grad()
    leaves = [x] + ([] if hx is None else list(hx))
    for t in leaves:
        t.grad = None
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(x, lengths, batch_first=module.batch_first, enforce_sorted=False)
    state = None if hx is None else (tuple(hx) if lstm else hx[0])
    out, fin = module(inp, state)
    fin = list(fin) if lstm else [fin]
    out_t = out.data if isinstance(out, PackedSequence) else out
    g = torch.Generator().manual_seed(3)
    loss = (out_t * torch.randn(out_t.shape, generator=g, dtype=out_t.dtype)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=g, dtype=f.dtype)).sum() for f in fin)
    loss.backward()
    grads = [t.grad for t in leaves] + [p.grad for p in module.parameters()]
    return [out_t.detach(), *[f.detach() for f in fin]], grads


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dt", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("seed", range(10))
def test_matches_torch_nn(kind, dt, seed):
    c = random_config(seed * 31 + list(KINDS).index(kind))
    T, N, I, H, L, bi, layout = c["T"], c["N"], c["I"], c["H"], c["L"], c["bi"], c["layout"]
    if layout == "unbatched":
        N = 1
    theirs, ours = twins(kind, dt, I, H, L, bi, c["bias"], layout == "batch_first")
    lstm = kind.startswith("lstm")
    P = KINDS[kind][1].get("proj_size") or H
    D = 2 if bi else 1
    g = torch.Generator().manual_seed(seed)
    xshape = (T, I) if layout == "unbatched" else (N, T, I) if layout == "batch_first" else (T, N, I)
    x = torch.randn(xshape, generator=g, dtype=dt, requires_grad=True)
    sshape = (lambda w: (L * D, w)) if layout == "unbatched" else (lambda w: (L * D, N, w))
    hx = None
    if c["given"]:
        hx = [torch.randn(sshape(P), generator=g, dtype=dt, requires_grad=True)]
        if lstm:
            hx.append(torch.randn(sshape(H), generator=g, dtype=dt, requires_grad=True))
    lengths = None
    if layout == "packed":
        lengths = torch.from_numpy(np.random.default_rng(seed).integers(1, T + 1, N))
        lengths[0] = T
    want_out, want_grads = run(theirs, x, hx, lstm, lengths)
    got_out, got_grads = run(ours, x, hx, lstm, lengths)
    for name, got, want in zip(["out", "h_n", "c_n"], got_out, want_out):
        assert got.dtype == dt and got.shape == want.shape, name
        assert rel(got, want) <= TOL[dt], (name, rel(got, want))
    names = ["x"] + [f"hx{i}" for i in range(len(hx or []))] + [n for n, _ in ours.named_parameters()]
    for name, got, want in zip(names, got_grads, want_grads):
        assert got is not None and want is not None, name
        assert rel(got, want) <= TOL[dt], (name, rel(got, want))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("frozen", ["none", "data-input", "frozen-layer0"])
def test_packed_bidirectional_reordered_matches_torch_nn(kind, frozen):
    """Lengths out of order (so the batch is really sorted and unsorted), both directions, 2 layers, hx given; with
    an input that needs no gradient (data) or the first layer's weights frozen."""
    theirs, ours = twins(kind, torch.float64, 3, 5, 2, True, True, False)
    if frozen == "frozen-layer0":
        for m in (theirs, ours):
            for n, p in m.named_parameters():
                p.requires_grad_("_l0" not in n)
    lstm = kind.startswith("lstm")
    P = KINDS[kind][1].get("proj_size") or 5
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 3, 3, generator=g, dtype=torch.float64, requires_grad=frozen != "data-input")
    hx = [torch.randn(4, 3, P, generator=g, dtype=torch.float64, requires_grad=True)]
    if lstm:
        hx.append(torch.randn(4, 3, 5, generator=g, dtype=torch.float64, requires_grad=True))
    lengths = torch.tensor([2, 4, 3])
    want_out, want_grads = run(theirs, x, hx, lstm, lengths)
    got_out, got_grads = run(ours, x, hx, lstm, lengths)
    for got, want in zip(got_out, want_out):
        assert rel(got, want) <= 1e-12
    assert len(got_grads) == len(want_grads)
    for got, want in zip(got_grads, want_grads):
        assert (got is None) == (want is None)
        if want is not None:
            assert rel(got, want) <= 1e-12
    if frozen == "frozen-layer0":
        assert ours.weight_ih_l0.grad is None and ours.weight_ih_l1.grad is not None


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn-tanh"])
def test_dropout_between_layers_matches_torch_nn(kind):
    """torch.nn draws its dropout masks with at::dropout on each layer's output, as F.dropout does: the same seed
    gives the same masks, so outputs and gradients agree in training mode too."""
    theirs, ours = twins(kind, torch.float64, 4, 6, 3, True, True, False)
    theirs.dropout = ours.dropout = 0.4
    x = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    results = []
    for m in (theirs, ours):
        torch.manual_seed(123)
        results.append(run(m, x, None, kind == "lstm"))
    (want_out, want_grads), (got_out, got_grads) = results
    for got, want in zip(got_out + got_grads, want_out + want_grads):
        assert rel(got, want) <= 1e-12
    torch.manual_seed(1)
    a, _ = ours(x)
    torch.manual_seed(2)
    b, _ = ours(x)
    assert not torch.equal(a, b)  # dropout is really applied in training mode
    ours.eval()
    assert torch.equal(ours(x)[0], ours(x)[0])


CELLS = {"lstm": ("LSTMCell", {}), "gru": ("GRUCell", {}), "rnn-tanh": ("RNNCell", {"nonlinearity": "tanh"}),
         "rnn-relu": ("RNNCell", {"nonlinearity": "relu"})}


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("dt", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", ["batched", "unbatched", "no-state", "no-bias"])
def test_cells_match_torch_nn(kind, dt, shape):
    name, kw = CELLS[kind]
    kw = dict(kw, dtype=dt, bias=shape != "no-bias")
    torch.manual_seed(5)
    theirs = getattr(torch.nn, name)(4, 6, **kw)
    torch.manual_seed(5)
    ours = getattr(pt, name)(4, 6, **kw)
    g = torch.Generator().manual_seed(1)
    lead = () if shape == "unbatched" else (3,)
    x = torch.randn(lead + (4,), generator=g, dtype=dt, requires_grad=True)
    hx = None if shape == "no-state" else [torch.randn(lead + (6,), generator=g, dtype=dt, requires_grad=True)
                                           for _ in range(2 if kind == "lstm" else 1)]
    results = []
    for m in (theirs, ours):
        m.zero_grad()
        for t in [x] + (hx or []):
            t.grad = None
        out = m(x, None if hx is None else tuple(hx) if kind == "lstm" else hx[0])
        out = list(out) if kind == "lstm" else [out]
        sum((o * (k + 1.5)).sin().sum() for k, o in enumerate(out)).backward()
        results.append([o.detach() for o in out] + [t.grad for t in [x] + (hx or [])]
                       + [p.grad for p in m.parameters()])
    for got, want in zip(results[1], results[0]):
        assert got.shape == want.shape
        assert rel(got, want) <= TOL[dt]


# ---- gradcheck: every module and option, in float64 --------------------------------------------------------------
GRADCHECK = [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=2, bidirectional=True)),
    ("LSTM", dict(bias=False, batch_first=True)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(linear_before_reset=False, bidirectional=True)),
    ("GRU", dict(bias=False, batch_first=True)),
    ("RNN", dict(nonlinearity="tanh", num_layers=2, bidirectional=True)),
    ("RNN", dict(nonlinearity="relu", batch_first=True)),
]


def functional(module, lengths=None):
    """f(x, h0[, c0], *parameters) -> (out, finals...) through module, for gradcheck over every input."""
    names = [n for n, _ in module.named_parameters()]
    lstm = isinstance(module, torch.nn.LSTM)
    n_states = 2 if lstm else 1

    def f(x, *rest):
        states, params = rest[:n_states], rest[n_states:]
        inp = x if lengths is None else pack_padded_sequence(x, lengths, batch_first=module.batch_first,
                                                             enforce_sorted=False)
        out, fin = torch.func.functional_call(module, dict(zip(names, params)),
                                              (inp, tuple(states) if lstm else states[0]))
        out = out.data if isinstance(out, PackedSequence) else out
        return (out, *(fin if lstm else (fin,)))

    return f


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("name,kw", GRADCHECK, ids=lambda v: v if isinstance(v, str) else
                         "-".join(f"{k}={v}" for k, v in v.items()))
def test_gradcheck(name, kw, lengths):
    torch.manual_seed(0)
    m = getattr(pt, name)(3, 4, dtype=torch.float64, **kw)
    T, N = 4, 3
    D, L = (2 if m.bidirectional else 1), m.num_layers
    P = getattr(m, "proj_size", 0) or 4
    x = torch.randn((N, T, 3) if m.batch_first else (T, N, 3), dtype=torch.float64, requires_grad=True)
    states = [torch.randn(L * D, N, P, dtype=torch.float64, requires_grad=True)]
    if name == "LSTM":
        states.append(torch.randn(L * D, N, 4, dtype=torch.float64, requires_grad=True))
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    lens = torch.tensor([4, 2, 3]) if lengths else None
    assert torch.autograd.gradcheck(functional(m, lens), (x, *states, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("name,kw", [("LSTMCell", {}), ("GRUCell", {}), ("GRUCell", dict(linear_before_reset=False)),
                                     ("RNNCell", dict(nonlinearity="relu")), ("RNNCell", dict(bias=False))],
                         ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={v}" for k, v in v.items()))
def test_gradcheck_cells(name, kw):
    torch.manual_seed(0)
    m = getattr(pt, name)(3, 4, dtype=torch.float64, **kw)
    names = [n for n, _ in m.named_parameters()]
    lstm = name == "LSTMCell"
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2 if lstm else 1)]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, *rest):
        st, ps = rest[:len(states)], rest[len(states):]
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, tuple(st) if lstm else st[0]))

    assert torch.autograd.gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gru_original_form_matches_pylstm_gru():
    """linear_before_reset=False, which torch lacks: the same numbers as pylstm.GRU (tested against the reference)."""
    torch.manual_seed(2)
    m = pt.GRU(5, 6, 2, bidirectional=True, linear_before_reset=False, dtype=torch.float64)
    assert "linear_before_reset=False" in repr(m)
    ref = pylstm.GRU(5, 6, 2, bidirectional=True, linear_before_reset=False, dtype="float64")
    ref.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    ref.train()
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    out, h_n = m(x)
    ref_out, ref_h = ref(x.detach().numpy())
    assert rel(out.detach(), torch.from_numpy(ref_out)) < 1e-12
    assert rel(h_n.detach(), torch.from_numpy(ref_h)) < 1e-12
    dout = torch.randn(out.shape, dtype=torch.float64)
    (out * dout).sum().backward()
    dx, _ = ref.backward(dout.numpy())
    assert rel(x.grad, torch.from_numpy(dx)) < 1e-12
    for n, p in m.named_parameters():
        assert rel(p.grad, torch.from_numpy(ref.grads[n])) < 1e-12, n


# ---- a model trained with either LSTM, and the module's life in torch ---------------------------------------------
class CharModel(torch.nn.Module):
    def __init__(self, lstm_cls, vocab=11, hidden=16):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 8, dtype=torch.float64)
        self.lstm = lstm_cls(8, hidden, num_layers=2, batch_first=True, dtype=torch.float64)
        self.head = torch.nn.Linear(hidden, vocab, dtype=torch.float64)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


def train(model, steps=20):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        # Counting modulo 11 from a random start: learnable, so the losses fall and the two runs can drift apart.
        tokens = (torch.randint(0, 11, (4, 1), generator=g) + torch.arange(13)) % 11
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def test_training_matches_torch_nn():
    torch.manual_seed(0)
    theirs = CharModel(torch.nn.LSTM)
    ours = CharModel(pt.LSTM)
    ours.load_state_dict(theirs.state_dict())
    want, got = train(theirs), train(ours)
    assert want[-1] < want[0] - 0.1  # it learned something
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    for (n, a), b in zip(theirs.state_dict().items(), ours.state_dict().values()):
        assert rel(b, a) < 1e-6, n


def test_state_dict_both_ways_and_initialisation():
    torch.manual_seed(4)
    theirs = torch.nn.LSTM(3, 5, 2, proj_size=2, bidirectional=True)
    torch.manual_seed(4)
    ours = pt.LSTM(3, 5, 2, proj_size=2, bidirectional=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)  # the same draws: torch's initialisation, from torch's generator
    other = torch.nn.LSTM(3, 5, 2, proj_size=2, bidirectional=True)
    other.load_state_dict(ours.state_dict())
    ours.load_state_dict(torch.nn.LSTM(3, 5, 2, proj_size=2, bidirectional=True).state_dict())


def test_save_load_and_deepcopy():
    torch.manual_seed(1)
    m = pt.GRU(3, 4, 2, linear_before_reset=False, dropout=0.25)
    x = torch.randn(5, 2, 3)
    m.eval()
    want, _ = m(x)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = pt.GRU(3, 4, 2, linear_before_reset=False)
    m2.load_state_dict(torch.load(buf))
    assert torch.equal(m2(x)[0], want)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m3 = torch.load(buf, weights_only=False)
    assert type(m3) is pt.GRU and not m3.linear_before_reset and m3.dropout == 0.25
    assert torch.equal(m3(x)[0], want)
    m4 = copy.deepcopy(m)
    assert torch.equal(m4(x)[0], want)
    with torch.no_grad():
        m4.weight_hh_l0.add_(1.0)
    assert torch.equal(m(x)[0], want)  # the copy owns its parameters


@pytest.mark.filterwarnings("ignore:`torch.jit.script.*` is deprecated:DeprecationWarning")
def test_torch_compile_works_and_jit_script_is_refused():
    """torch.compile runs a model that contains pylstm.torch modules (the kernels run eagerly, as a graph break);
    torch.jit.script refuses them with a message that says so."""
    torch.manual_seed(0)
    model = CharModel(pt.LSTM)
    compiled = torch.compile(model)
    tokens = torch.randint(0, 11, (3, 9))
    want = model(tokens)
    got = compiled(tokens)
    assert rel(got.detach(), want.detach()) < 1e-12
    got.sum().backward()
    g = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    want.sum().backward()
    for a, b in zip(g, model.parameters()):
        assert rel(a, b.grad) < 1e-12
    for m in (pt.LSTM(3, 4), pt.GRUCell(3, 4)):
        with pytest.raises(RuntimeError, match="cannot be compiled by torch.jit.script.*torch.compile works"):
            torch.jit.script(m)


def test_inference_mode_and_no_grad_run_without_a_cache(monkeypatch):
    modes = []
    real = _cells.LSTM.forward

    def spy(*args, training, **kw):
        modes.append(training)
        return real(*args, training=training, **kw)

    monkeypatch.setattr(pt.LSTM, "_kind", dataclasses.replace(_cells.LSTM, forward=spy))
    torch.manual_seed(0)
    m = pt.LSTM(4, 8, 2)
    x = torch.randn(6, 3, 4)
    want, _ = m(x)
    assert modes == [True, True]  # the parameters need gradients: the training kernels, which keep a cache
    with torch.inference_mode():
        got, (h, c) = m(x)
    assert torch.allclose(got, want.detach(), atol=1e-6) and h.shape == (2, 3, 8)
    with torch.no_grad():
        assert torch.allclose(m(x)[0], want.detach(), atol=1e-6)
    assert modes == [True, True] + [False] * 4


def test_tensors_reach_the_kernels_without_a_copy(monkeypatch):
    seen = []
    real = _cells.LSTM.forward

    def spy(x, h0, c0, W_ih, W_hh, *args, **kw):
        seen.append((x.__array_interface__["data"][0], W_ih.__array_interface__["data"][0],
                     W_hh.__array_interface__["data"][0]))
        return real(x, h0, c0, W_ih, W_hh, *args, **kw)

    monkeypatch.setattr(pt.LSTM, "_kind", dataclasses.replace(_cells.LSTM, forward=spy))
    m = pt.LSTM(4, 8)
    x = torch.randn(6, 3, 4)
    m(x)
    assert seen == [(x.data_ptr(), m.weight_ih_l0.data_ptr(), m.weight_hh_l0.data_ptr())]


# ---- what is refused, clearly -------------------------------------------------------------------------------------
def test_devices_and_dtypes_refused():
    with pytest.raises(ValueError, match="CPU only"):
        pt.LSTM(3, 4, device="cuda")
    with pytest.raises(TypeError, match="float64, torch.bfloat16 and torch.float16, got torch.int32"):
        pt.GRU(3, 4, dtype=torch.int32)
    m = pt.RNN(3, 4, device="meta")  # built, not run
    with pytest.raises(ValueError, match="meta"):
        m(torch.randn(2, 1, 3))
    m = pt.LSTM(3, 4).to(torch.bfloat16)  # 16-bit parameters run (tests/test_torch_mixed.py), with inputs of theirs
    with pytest.raises(ValueError, match="float32, but the parameters are torch.bfloat16"):
        m(torch.randn(2, 1, 3))
    m = pt.LSTM(3, 4)
    # The classes torch.nn raises (test_errors_are_torchs_classes checks them against torch's own test data).
    with pytest.raises(ValueError, match="float64.*float32"):
        m(torch.randn(2, 1, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="float64.*float32"):
        pt.LSTMCell(3, 4)(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="input_size = 3"):
        m(torch.randn(2, 1, 5))
    with pytest.raises(RuntimeError, match="hidden state 0 of shape"):
        m(torch.randn(2, 1, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 1, 4)))
    with pytest.raises(TypeError, match=r"hx\[1\] must be a torch.Tensor"):
        m(torch.randn(2, 1, 3), (torch.zeros(1, 1, 4), None))
    with pytest.raises(TypeError, match=r"hx\[1\] must be a torch.Tensor"):
        pt.LSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4), None))
    with pytest.raises(TypeError, match="linear_before_reset must be a bool"):
        pt.GRU(3, 4, linear_before_reset="no")


def test_double_backward_refused_and_second_backward_repeats_the_first():
    m = pt.GRU(3, 4, dtype=torch.float64)
    x = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    out, _ = m(x)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(out.sum(), x, create_graph=True)
    out, _ = m(x)
    first = torch.autograd.grad(out.sum(), [x, *m.parameters()], retain_graph=True)
    again = torch.autograd.grad(out.sum(), [x, *m.parameters()])
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def test_import_pylstm_does_not_import_torch_and_missing_torch_is_explained():
    code = "import sys, pylstm; pylstm.LSTM(2, 3)(__import__('numpy').zeros((2, 1, 2), 'float32')); " \
           "assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
    code = "import sys; sys.modules['torch'] = None\ntry:\n    import pylstm.torch\nexcept ImportError as e:\n" \
           "    print(e)\nelse:\n    raise SystemExit('imported')"
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd="/", capture_output=True, text=True).stdout
    assert "pip install torch==2.13.0" in out


def _torch_error_inputs():
    """Every error input of torch's own module test data for the recurrent modules and cells, in both dtypes and
    modes: (id, module name, ErrorModuleInput, training)."""
    from torch.testing._internal.common_modules import module_db  # needs expecttest (in the test extra)

    cases = []
    for info in module_db:
        name = info.module_cls.__name__
        if name not in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell") or not info.module_error_inputs_func:
            continue
        for dtype in (torch.float32, torch.float64):
            for training in (True, False):
                errs = info.module_error_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False,
                                                     training=training)
                for k, e in enumerate(errs):
                    cases.append((f"{name}-{str(dtype)[6:]}-{'train' if training else 'eval'}-{k}", name, e, training))
    return cases


def test_torch_error_inputs_are_found():
    assert len(_torch_error_inputs()) >= 100  # the data the next test runs through is really there


@pytest.mark.parametrize("name,err,training", [c[1:] for c in _torch_error_inputs()],
                         ids=[c[0] for c in _torch_error_inputs()])
def test_errors_are_torchs_classes(name, err, training):
    """A drop-in raises what torch.nn raises for each error input of torch's own module tests (issue 24, bug 5):
    the same class, checked by exact type."""
    from torch.testing._internal.common_modules import ModuleErrorEnum

    mi = err.module_error_input
    c, f = mi.constructor_input, mi.forward_input

    def raised(cls):
        try:
            m = cls(*c.args, **c.kwargs)
            if err.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
                return None
            m.train(training)
            m(*f.args, **f.kwargs)
        except Exception as e:  # noqa: BLE001  (the class is what is compared)
            return e
        return None

    want, got = raised(getattr(torch.nn, name)), raised(getattr(pt, name))
    assert want is not None and isinstance(want, err.error_type)
    assert type(got) is type(want), f"torch.nn raises {type(want).__name__} ({want}), pylstm.torch {got!r}"


def test_a_sigmoid_rnn_has_no_torch_form():
    """torch.nn has no sigmoid RNN: pylstm.torch refuses to build one (saying where it exists), and pylstm's own
    RNN and RNNCell with nonlinearity='sigmoid' refuse to_torch."""
    for name in ("RNN", "RNNCell"):
        with pytest.raises(ValueError, match=f"pylstm.torch.{name} has no sigmoid"):
            getattr(pt, name)(3, 4, nonlinearity="sigmoid")
        with pytest.raises(ValueError, match=f"pylstm.torch.{name} has no sigmoid"):
            getattr(pt, name)(3, 4, 1 if name == "RNN" else True, "sigmoid")  # positionally, as torch takes it
        with pytest.raises(ValueError, match=f"torch.nn.{name} has no sigmoid"):
            getattr(pylstm, name)(3, 4, nonlinearity="sigmoid").to_torch()


def test_subclasses_convert_to_and_from_torch():
    """The torch class comes from the cell kind, not from the Python class name: a user's subclass converts too."""

    class MyLSTM(pylstm.LSTM):
        pass

    class MyGRUCell(pylstm.GRUCell):
        pass

    for cls, tcls, args in ((MyLSTM, torch.nn.LSTM, (3, 4)), (MyGRUCell, torch.nn.GRUCell, (3, 4))):
        m = cls(*args, seed=0)
        t = m.to_torch()
        assert type(t) is tcls
        back = cls.from_torch(t)
        assert type(back) is cls
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(back.state_dict()[k], v)
