"""pylstm.torch.quantize_dynamic (issue 26): the successor of torch's deprecated dynamic int8 LSTM inside a torch
model, with pylstm.quantize's maths, torch.nn.LSTM's call forms, and the refusals."""

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pylstm  # noqa: E402
import pylstm.torch as pt  # noqa: E402
from pylstm import _core  # noqa: E402


class Model(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


DTYPES = ["int8", torch.qint8] + (["bfloat16", torch.bfloat16] if _core.bf16_path() else [])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cls", [torch.nn.LSTM, pt.LSTM], ids=["torch.nn.LSTM", "pylstm.torch.LSTM"])
def test_the_lstms_are_replaced_and_compute_pylstm_quantize(dtype, cls):
    torch.manual_seed(0)
    model = Model(cls(8, 16, num_layers=2, batch_first=True, bidirectional=True)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = pt.quantize_dynamic(model, dtype)
    assert isinstance(q.rnn, pt.QuantizedLSTM) and type(q.head) is torch.nn.Linear and not q.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the float model is unchanged
    assert isinstance(model.rnn, cls)
    x = torch.randn(5, 7, 8)
    with torch.no_grad():
        ref_out = model(x)
    out = q(x)
    name = {torch.qint8: "int8", torch.bfloat16: "bfloat16"}.get(dtype, dtype)
    mine = pylstm.quantize(pylstm.LSTM.from_torch(model.rnn if cls is torch.nn.LSTM else model.rnn), name)
    y, _ = mine(x.numpy())
    np.testing.assert_allclose(q.rnn(x)[0].numpy(), y, rtol=1e-6, atol=1e-6)
    assert rel(out.detach().numpy(), ref_out.numpy()) < 2e-2


def test_call_forms_packed_sequences_states_and_16_bit_input():
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(4, 6, num_layers=2)
    q = pt.quantize_dynamic(lstm)
    assert isinstance(q, pt.QuantizedLSTM) and "dtype=int8" in repr(q)
    x = torch.randn(9, 3, 4)
    lengths = torch.tensor([4, 9, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, (h_n, c_n) = q(packed)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
    for n, L in enumerate(lengths.tolist()):
        y1, (h1, c1) = q(x[:L, n:n + 1])
        torch.testing.assert_close(padded[:L, n:n + 1], y1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h_n[:, n:n + 1], h1, rtol=1e-5, atol=1e-6)
    h0, c0 = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    y, (h, c) = q(x, (h0, c0))
    yu, (hu, cu) = q(x[:, 0], (h0[:, 0], c0[:, 0]))  # unbatched
    torch.testing.assert_close(yu, y[:, 0], rtol=1e-5, atol=1e-6)
    yb, (hb, _) = q(x.to(torch.bfloat16))
    assert yb.dtype == hb.dtype == torch.bfloat16


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")  # torch's own float LSTMP
def test_a_projection_is_quantized_too():
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(4, 6, proj_size=2)
    q = pt.quantize_dynamic(lstm)
    x = torch.randn(5, 3, 4)
    out, (h, c) = q(x)
    with torch.no_grad():
        want, (wh, wc) = lstm(x)
    assert out.shape == want.shape and h.shape == wh.shape and c.shape == wc.shape
    assert rel(out.numpy(), want.numpy()) < 2e-2


def test_state_dict_and_torch_save_round_trip():
    torch.manual_seed(2)
    model = Model(torch.nn.LSTM(4, 6, batch_first=True))
    q = pt.quantize_dynamic(model)
    sd = q.state_dict()
    assert sd["rnn.weight_ih_l0"].dtype == torch.int8 and sd["rnn.weight_ih_l0_scale"].dtype == torch.float32
    x = torch.randn(2, 5, 4)
    want = q(x)
    other = pt.quantize_dynamic(Model(torch.nn.LSTM(4, 6, batch_first=True)))
    assert not torch.equal(other(x), want)
    other.load_state_dict(sd)
    torch.testing.assert_close(other(x), want, rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(q, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(loaded(x), want, rtol=0, atol=0)


@pytest.mark.parametrize("make, states", [
    (lambda: torch.nn.GRU(4, 6, num_layers=2, bidirectional=True), 1),
    (lambda: torch.nn.RNN(4, 6, nonlinearity="relu"), 1),
    (lambda: pt.GRU(4, 6, linear_before_reset=False), 1),
], ids=["gru", "rnn relu", "pylstm.torch original gru"])
def test_grus_and_rnns_are_replaced(make, states):
    torch.manual_seed(4)
    rnn = make().eval()
    q = pt.quantize_dynamic(torch.nn.ModuleDict({"enc": rnn}))
    assert type(q["enc"]) is (pt.QuantizedGRU if isinstance(rnn, torch.nn.GRU) else pt.QuantizedRNN)
    x = torch.randn(7, 3, 4)
    with torch.no_grad():
        want, wh = rnn(x)
    out, h = q["enc"](x)
    assert out.shape == want.shape and h.shape == wh.shape and rel(out.numpy(), want.numpy()) < 2e-2
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([7, 3, 5]), enforce_sorted=False)
    po, ph = q["enc"](packed)
    assert isinstance(po, torch.nn.utils.rnn.PackedSequence) and ph.shape == wh.shape


@pytest.mark.parametrize("cls, kw", [(torch.nn.LSTMCell, {}), (torch.nn.GRUCell, {}),
                                     (torch.nn.RNNCell, {"nonlinearity": "relu"})], ids=["lstm", "gru", "rnn"])
def test_cells_are_replaced(cls, kw):
    torch.manual_seed(5)
    cell = cls(4, 6, **kw)
    q = pt.quantize_dynamic(cell)
    assert type(q).__name__ == "Quantized" + cls.__name__
    x = torch.randn(3, 4)
    with torch.no_grad():
        want = cell(x)
    got = q(x)
    if isinstance(want, tuple):
        assert all(rel(g.numpy(), w.numpy()) < 2e-2 for g, w in zip(got, want))
        got1 = q(x[0], (want[0][0], want[1][0]))  # unbatched, with a state
        assert got1[0].shape == (6,)
    else:
        assert rel(got.numpy(), want.numpy()) < 2e-2 and q(x[0], want[0]).shape == (6,)


def test_refusals():
    with pytest.raises(ValueError, match="dtype must be"):
        pt.quantize_dynamic(torch.nn.LSTM(4, 6), torch.float16)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        pt.quantize_dynamic("lstm")
    if not _core.bf16_path():
        with pytest.raises(ValueError, match="bfloat16"):
            pt.quantize_dynamic(torch.nn.LSTM(4, 6), "bfloat16")
