"""The training pieces: Linear and softmax cross-entropy against finite differences, SGD / Adam / clipping against
torch.optim, checkpoints that round-trip, and a short run whose loss falls."""

import numpy as np
import pytest
from helpers import numerical_gradient

import pylstm
from pylstm import nn, optim


def test_linear_gradients_match_finite_differences(rng):
    lin = nn.Linear(5, 3, dtype="float64", seed=0)
    x = rng.standard_normal((4, 2, 5))
    dy = rng.standard_normal((4, 2, 3))

    def loss():
        return float(np.sum(lin(x) * dy))

    lin(x)
    dx = lin.backward(dy)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-7, atol=1e-9)
    with lin.edit_parameters() as params:
        for k, p in params.items():
            np.testing.assert_allclose(lin.grads[k], numerical_gradient(loss, p), rtol=1e-7, atol=1e-9)


def test_softmax_cross_entropy_value_and_gradient(rng):
    logits = rng.standard_normal((3, 4, 6))
    t = rng.integers(0, 6, (3, 4))
    loss, d = nn.softmax_cross_entropy(logits, t)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    want = -np.mean(np.log(np.take_along_axis(p, t[..., None], -1)))
    assert loss == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(d, numerical_gradient(lambda: nn.softmax_cross_entropy(logits, t)[0], logits),
                               rtol=1e-6, atol=1e-10)
    with pytest.raises(ValueError, match="^targets must be in"):
        nn.softmax_cross_entropy(logits, t + 6)


def _torch_pair(rng):
    torch = pytest.importorskip("torch")
    lin = nn.Linear(4, 3, dtype="float64", seed=1)
    tp = [torch.tensor(v.copy(), requires_grad=True) for v in lin.state_dict().values()]
    grads = [rng.standard_normal(v.shape) for v in lin.state_dict().values()]
    return torch, lin, tp, grads


@pytest.mark.parametrize("name", ["sgd", "sgd-momentum", "adam"])
def test_optimizers_match_torch(rng, name):
    torch, lin, tp, grads = _torch_pair(rng)
    if name == "adam":
        ours, theirs = optim.Adam(lin, lr=0.01), torch.optim.Adam(tp, lr=0.01)
    else:
        mom = 0.9 if name == "sgd-momentum" else 0.0
        ours, theirs = optim.SGD(lin, lr=0.05, momentum=mom), torch.optim.SGD(tp, lr=0.05, momentum=mom)
    for step in range(5):
        for g, (k, _), t in zip(grads, lin.state_dict().items(), tp):
            lin.grads[k][...] = g * (step + 1)
            t.grad = torch.tensor(g * (step + 1))
        ours.step()
        theirs.step()
    for p, t in zip(lin.state_dict().values(), tp):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_clip_grad_norm_matches_torch(rng):
    torch, lin, tp, grads = _torch_pair(rng)
    for g, k, t in zip(grads, lin.grads, tp):
        lin.grads[k][...] = g
        t.grad = torch.tensor(g)
    norm = optim.clip_grad_norm(lin, 0.5)
    want = torch.nn.utils.clip_grad_norm_(tp, 0.5)
    assert norm == pytest.approx(float(want), rel=1e-12)
    for k, t in zip(lin.grads, tp):
        np.testing.assert_allclose(lin.grads[k], t.grad.numpy(), rtol=1e-12)
    assert np.sqrt(sum(np.sum(g * g) for g in lin.grads.values())) <= 0.5 + 1e-9


def test_checkpoint_round_trip(tmp_path, rng):
    rnn, head = pylstm.LSTM(3, 8, 2, seed=0), nn.Linear(8, 5, seed=0)
    opt = optim.Adam([rnn, head], lr=0.01)
    x = rng.standard_normal((6, 2, 3)).astype("f4")
    out, _ = rnn(x)
    head(out)
    rnn.backward(np.ones_like(out))
    head.backward(np.ones((6, 2, 5), "f4"))
    opt.step()
    path = tmp_path / "ck.npz"
    nn.save(path, {"rnn": rnn, "head": head}, opt, vocab=np.array(list("abcde")))

    rnn2, head2 = pylstm.LSTM(3, 8, 2, seed=9), nn.Linear(8, 5, seed=9)
    opt2 = optim.Adam([rnn2, head2], lr=0.5)
    extra = nn.load(path, {"rnn": rnn2, "head": head2}, opt2)
    assert list(extra["vocab"]) == list("abcde")
    for a, b in ((rnn, rnn2), (head, head2)):
        for k, v in a.state_dict().items():
            np.testing.assert_array_equal(v, b.state_dict()[k])
    assert opt2.steps == 1 and opt2.lr == 0.01
    for k, v in opt.state.items():
        np.testing.assert_array_equal(v, opt2.state[k])

    # A checkpoint of another shape changes nothing.
    small = pylstm.LSTM(3, 4, 2, seed=1)
    before = {k: v.copy() for k, v in small.state_dict().items()}
    with pytest.raises(ValueError, match="has shape"):
        nn.load(path, {"rnn": small})
    for k, v in small.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("cls", [pylstm.LSTM, pylstm.GRU])
def test_a_short_training_run_lowers_the_loss(cls):
    # Next-character prediction on a repeating string: the loss must fall well below its starting value.
    text = "hello recurrent world. " * 20
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text])
    V, T = len(vocab), 24
    eye = np.eye(V, dtype="f4")
    rnn, head = cls(V, 32, seed=0), nn.Linear(32, V, seed=0)
    opt = optim.Adam([rnn, head], lr=0.02)
    starts = np.arange(0, len(ids) - T - 1, 7)
    losses = []
    for step in range(60):
        s = starts[step % len(starts):][:8]
        if len(s) < 8:
            s = starts[:8]
        x = eye[np.stack([ids[i:i + T] for i in s], axis=1)]
        y = np.stack([ids[i + 1:i + T + 1] for i in s], axis=1)
        opt.zero_grad()
        out, _ = rnn(x)
        loss, dlogits = nn.softmax_cross_entropy(head(out), y)
        rnn.backward(head.backward(dlogits))
        optim.clip_grad_norm([rnn, head], 5.0)
        opt.step()
        losses.append(loss)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
