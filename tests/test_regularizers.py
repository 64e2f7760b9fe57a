"""The recurrent regularizers (issue 27) in the NumPy API: weight-drop (DropConnect on W_hh, Merity et al. 2017).
W_hh is replaced by M ⊙ W_hh in a training call, M drawn once per call for each layer and direction (0 or
1/(1 − p)); its gradient is M ⊙ the gradient with respect to the masked weights."""

import numpy as np
import pytest
from helpers import parameter_gradient

import pylstm

KINDS = {"lstm": pylstm.LSTM, "gru": pylstm.GRU, "rnn": pylstm.RNN}


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _loss_and_grads(m, x, R, masks=None):
    m.zero_grad()
    out, _ = m(x, masks=masks)
    m.backward(R)
    return float((out * R).sum()), {k: v.copy() for k, v in m.grads.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_p_zero_is_the_plain_module_bit_for_bit(kind):
    a = KINDS[kind](3, 5, num_layers=2, bidirectional=True, dropout=0.2, seed=1)
    b = KINDS[kind](3, 5, num_layers=2, bidirectional=True, dropout=0.2, weight_drop=0.0, seed=1)
    x, R = _x((4, 2, 3), dtype=np.float32), _x((4, 2, 10), 1, np.float32)
    la, ga = _loss_and_grads(a, x, R)
    lb, gb = _loss_and_grads(b, x, R)
    assert la == lb and all(np.array_equal(ga[k], gb[k]) for k in ga) and b.masks == {}


@pytest.mark.parametrize("kind", KINDS)
def test_the_masks_are_drawn_per_layer_and_direction_and_recorded(kind):
    m = KINDS[kind](3, 40, num_layers=2, bidirectional=True, weight_drop=0.3, seed=2)
    out, _ = m(_x((4, 2, 3), dtype=np.float32))
    G = m._kind.G
    assert sorted(m.masks) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    values = np.concatenate([v["weight_drop"].ravel() for v in m.masks.values()])
    assert set(np.unique(values)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((values == 0).mean() - 0.3) < 0.02  # 4 · 120 · 40 draws
    assert m.masks["l0"]["weight_drop"].shape == (G * 40, 40)
    assert not np.array_equal(m.masks["l0"]["weight_drop"], m.masks["l0_reverse"]["weight_drop"])
    first = {k: v["weight_drop"].copy() for k, v in m.masks.items()}
    m(_x((4, 2, 3), dtype=np.float32))
    assert not np.array_equal(first["l0"], m.masks["l0"]["weight_drop"])  # a new draw per call
    again = KINDS[kind](3, 40, num_layers=2, bidirectional=True, weight_drop=0.3, seed=2)
    again(_x((4, 2, 3), dtype=np.float32))
    assert all(np.array_equal(first[k], again.masks[k]["weight_drop"]) for k in first)  # seeded


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_with_masks_is_the_plain_module_on_masked_weights(kind):
    p = 0.4
    m = KINDS[kind](3, 4, num_layers=2, bidirectional=True, weight_drop=p, dtype="float64", seed=3)
    plain = KINDS[kind](3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=3)
    x, R = _x((5, 2, 3), 4), _x((5, 2, 8), 5)
    m(x)
    masks = m.masks
    with plain.edit_parameters() as params:
        for key, mk in masks.items():
            params["weight_hh_" + key] *= mk["weight_drop"]
    loss, grads = _loss_and_grads(m, x, R, masks)
    ploss, pgrads = _loss_and_grads(plain, x, R)
    assert loss == pytest.approx(ploss, rel=1e-12)
    for k in grads:
        want = pgrads[k] * masks[k[len("weight_hh_"):]]["weight_drop"] if k.startswith("weight_hh") else pgrads[k]
        np.testing.assert_allclose(grads[k], want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_the_gradients_against_finite_differences(kind):
    m = KINDS[kind](2, 3, bidirectional=True, weight_drop=0.5, dtype="float64", seed=6)
    x, R = _x((4, 2, 2), 7), _x((4, 2, 6), 8)
    m(x)
    masks = m.masks
    _, grads = _loss_and_grads(m, x, R, masks)
    for name in ("weight_hh_l0", "weight_hh_l0_reverse", "weight_ih_l0"):
        num = parameter_gradient(m, name, lambda: float((m(x, masks=masks)[0] * R).sum()))
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-8)
        if name.startswith("weight_hh"):
            dropped = masks[name[len("weight_hh_"):]]["weight_drop"] == 0
            assert dropped.any() and not grads[name][dropped].any()


def test_eval_uses_w_hh_itself_and_the_checks():
    m = pylstm.LSTM(3, 4, weight_drop=0.5, seed=9)
    plain = pylstm.LSTM(3, 4, seed=9).eval()
    x = _x((3, 2, 3), dtype=np.float32)
    m.eval()
    np.testing.assert_array_equal(m(x)[0], plain(x)[0])
    with pytest.raises(ValueError, match="masks are for training calls"):
        m(x, masks={})
    m.train()
    with pytest.raises(ValueError, match=r"masks\['l0'\]\['weight_drop'\]"):
        m(x, masks={"l0": {}})
    with pytest.raises(ValueError, match=r"must have shape \(16, 4\)"):
        m(x, masks={"l0": {"weight_drop": np.ones((4, 4))}})
    with pytest.raises(TypeError, match="masks must be a dict"):
        m(x, masks=[1])
    with pytest.raises(ValueError, match="weight_drop must be in"):
        pylstm.GRU(3, 4, weight_drop=1.0)
    with pytest.raises(TypeError, match="weight_drop must be a number"):
        pylstm.RNN(3, 4, weight_drop="0.1")
    assert "weight_drop=0.5" in repr(m)
    s = m.eval().stream()  # eval: the plain weights, packed and kept
    np.testing.assert_allclose(s.step(x[0]), plain(x[:1])[0][0], rtol=1e-6, atol=1e-7)
    q = pylstm.quantize(m, "int8")  # eval-mode weight-drop is the plain model
    assert q(x)[0].shape == (3, 2, 4)


def test_the_cells_refuse_weight_drop_and_point_to_the_layers():
    for cls in (pylstm.LSTMCell, pylstm.GRUCell, pylstm.RNNCell):
        with pytest.raises(ValueError, match=rf"belongs to a sequence.*pylstm\.{cls.__name__[:-4]}\("):
            cls(3, 4, weight_drop=0.2)


def test_given_masks_are_copied_and_masks_for_an_option_off_are_refused():
    m = pylstm.LSTM(3, 4, weight_drop=0.5, dtype="float64", seed=10)
    x, R = _x((3, 2, 3), 11), _x((3, 2, 4), 12)
    m(x)
    masks = {k: {o: v.copy() for o, v in d.items()} for k, d in m.masks.items()}
    _, want = _loss_and_grads(m, x, R, masks)
    m.zero_grad()
    m(x, masks=masks)
    masks["l0"]["weight_drop"][:] = 0  # the caller's array changes between forward and backward ...
    m.masks["l0"]["weight_drop"][:] = 0  # ... and so does the module's record of it
    m.backward(R)
    np.testing.assert_array_equal(m.grads["weight_hh_l0"], want["weight_hh_l0"])  # backward used its own copy
    with pytest.raises(ValueError, match="weight_drop is off"):
        pylstm.LSTM(3, 4, seed=0)(x.astype(np.float32), masks={"l0": {"weight_drop": np.ones((16, 4))}})
    with pytest.raises(ValueError, match="zoneout is off"):
        m(x, masks={"l0": {"zoneout": 1}})
