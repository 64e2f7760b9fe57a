"""The int8 math of the NumPy reference (issue 26, item 2): per-row symmetric int8 weights, per-row u8 inputs with a
zero point, int32 accumulation with the zero point taken out by the weights' row sums, float32 gate maths. The
quantizers' error bounds, the accumulation's exactness, and the whole layer within 1e-2 of float32."""

import numpy as np
import pytest

from pylstm import reference as ref


def test_weights_are_symmetric_per_row_within_half_a_step():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 33)).astype(np.float32) * rng.uniform(0.01, 3, (7, 1)).astype(np.float32)
    W[3] = 0
    q, s, rowsum = ref.quantize_weights_int8(W)
    assert q.dtype == np.int8 and s.dtype == np.float32 and rowsum.dtype == np.int32
    assert q.min() >= -127 and np.all(np.abs(q).max(axis=1)[[0, 1, 2, 4, 5, 6]] == 127)
    assert s[3] == 1 and not q[3].any()
    assert np.all(np.abs(W - s[:, None] * q) <= s[:, None] / 2 * (1 + 1e-6))
    assert np.array_equal(rowsum, q.astype(np.int64).sum(axis=1))


def test_inputs_are_u8_per_row_with_zero_exact():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 40)).astype(np.float32)
    a[1] = np.abs(a[1])  # all positive: zero point 0
    a[2] = -np.abs(a[2])  # all negative: zero point 255
    a[3] = 0
    a[:, 7] = 0
    q, s, z = ref.quantize_rows_u8(a)
    assert q.dtype == np.uint8 and z[1] == 0 and z[2] == 255 and s[3] == 1 and z[3] == 0
    back = s[:, None] * (q.astype(np.float32) - z[:, None])
    assert np.all(back[:, 7] == 0)  # zero is exactly representable
    assert np.all(np.abs(back - a) <= s[:, None] / 2 * (1 + 1e-5) + 1e-7)


def test_accumulation_is_exact_and_refuses_what_int32_cannot_hold():
    rng = np.random.default_rng(2)
    aq = rng.integers(0, 256, (4, 300)).astype(np.uint8)
    z = rng.integers(0, 256, 4).astype(np.int32)
    Wq = rng.integers(-127, 128, (6, 300)).astype(np.int8)
    rowsum = Wq.astype(np.int32).sum(axis=1)
    acc = ref.int8_accumulate(aq, z, Wq, rowsum)
    exact = [[sum((int(aq[n, k]) - int(z[n])) * int(Wq[j, k]) for k in range(300)) for j in range(6)]
             for n in range(4)]
    assert acc.dtype == np.int32 and acc.tolist() == exact
    K = ref._INT8_MAX_K  # the longest reduction: the largest sum still fits int32
    extreme = ref.int8_accumulate(np.full((1, K), 255, np.uint8), np.zeros(1, np.int32),
                                  np.full((1, K), 127, np.int8), np.array([127 * K], np.int32))
    assert extreme[0, 0] == 255 * 127 * K <= 2**31 - 1
    with pytest.raises(ValueError, match="at most"):
        ref.int8_accumulate(np.zeros((1, K + 1), np.uint8), np.zeros(1, np.int32), np.zeros((1, K + 1), np.int8),
                            np.zeros(1, np.int32))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_before", "rnn"])
@pytest.mark.parametrize("I, H", [(64, 64), (256, 256)])
def test_a_layer_with_int8_weights_stays_within_1e_2_of_float32(cell, I, H):
    """PyTorch's initialisation (uniform ±1/√H), random inputs: ‖int8 − fp32‖ / ‖fp32‖ over the whole output."""
    rng = np.random.default_rng(3)
    G = {"lstm": 4, "gru": 3, "gru_before": 3, "rnn": 1}[cell]
    k = 1 / np.sqrt(H)
    W_ih, W_hh = (rng.uniform(-k, k, (G * H, n)).astype(np.float32) for n in (I, H))
    b_ih, b_hh = (rng.uniform(-k, k, G * H).astype(np.float32) for _ in range(2))
    x = rng.standard_normal((30, 8, I)).astype(np.float32)
    q_ih, q_hh = ref.Int8Weights(W_ih), ref.Int8Weights(W_hh)
    if cell == "lstm":
        y = ref.lstm_forward(x, None, None, W_ih, W_hh, b_ih, b_hh, training=False)[0]
        yq = ref.lstm_forward(x, None, None, q_ih, q_hh, b_ih, b_hh, training=False)[0]
    elif cell == "rnn":
        y = ref.rnn_forward(x, None, W_ih, W_hh, b_ih, b_hh, training=False)[0]
        yq = ref.rnn_forward(x, None, q_ih, q_hh, b_ih, b_hh, training=False)[0]
    else:
        lbr = cell == "gru"
        y = ref.gru_forward(x, None, W_ih, W_hh, b_ih, b_hh, linear_before_reset=lbr, training=False)[0]
        yq = ref.gru_forward(x, None, q_ih, q_hh, b_ih, b_hh, linear_before_reset=lbr, training=False)[0]
    assert yq.dtype == np.float32 and yq.shape == y.shape
    err = _rel(yq, y)
    assert 0 < err < 1e-2, err


def test_the_int8_product_is_the_float_product_of_the_quantized_operands():
    """`a @ Int8Weights(W).T` equals, to float32 rounding, the dequantized input times the dequantized weights."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((12, 50)).astype(np.float32)
    a = rng.standard_normal((3, 50)).astype(np.float32)
    w = ref.Int8Weights(W)
    aq, s, z = ref.quantize_rows_u8(a)
    a_seen = s[:, None] * (aq.astype(np.float64) - z[:, None])
    np.testing.assert_allclose(a @ w.T, a_seen @ w.dequantized().astype(np.float64).T, rtol=1e-5, atol=1e-5)
    assert (w[4:8].q == w.q[4:8]).all() and w[4:8].shape == (4, 50)


def test_to_bfloat16_rounds_to_nearest_even():
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)  # bfloat16's spacing at 1
    x = np.array([one, one + ulp / 2, one + ulp * 1.5, one + ulp / 2 + np.float32(2 ** -20), -one - ulp / 2,
                  np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
    y = ref.to_bfloat16(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[:5], [1.0, 1.0, one + 2 * ulp, one + ulp, -1.0])  # ties to even
    assert np.isposinf(y[5]) and np.isneginf(y[6]) and np.isnan(y[7]) and y[8] == 0 and np.signbit(y[9])
    assert (y.view(np.uint32)[~np.isnan(y)] & 0xFFFF == 0).all()
