"""The compiled int8 products against reference.py's int8 section (issue 26, item 2): the same quantized inputs
and exactly the same int32 sums, at this ISA level (CI runs this file at every level)."""

import numpy as np
import pytest

from pylstm import _core
from pylstm import reference as ref


def _rows(rng, N, K):
    a = (rng.standard_normal((N, K)) * rng.uniform(0.01, 10, (N, 1))).astype(np.float32)
    if N > 3:
        a[0] = np.abs(a[0])  # all positive
        a[1] = -np.abs(a[1])  # all negative
        a[2] = 0  # all zero
    return a


@pytest.mark.parametrize("N, K", [(1, 1), (5, 3), (8, 64), (3, 257), (0, 4)])
def test_row_quantization_is_the_references(N, K):
    a = _rows(np.random.default_rng(K), N, K)
    q, s, z = _core.quantize_rows_u8(a)
    rq, rs, rz = ref.quantize_rows_u8(a)
    assert q.dtype == np.uint8 and s.dtype == np.float32 and z.dtype == np.int32
    assert np.array_equal(q, rq) and np.array_equal(s, rs) and np.array_equal(z, rz)


PATHS = _core.int8_paths()  # every int8 dot form this CPU runs at the level in use


def test_the_paths_are_the_levels():
    level = _core.isa()
    forms = {"avx512": ["avx512-vnni", "avx512"], "avx2": ["avx-vnni", "avx2"]}.get(level, ["portable"])
    assert PATHS == forms[-len(PATHS):] and len(PATHS) >= 1
    import pylstm
    assert pylstm.config()["int8"] == PATHS[0] and pylstm.config()["int8_available"] == PATHS


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("N, J, K", [(1, 1, 1), (4, 7, 33), (16, 64, 256), (3, 5, 1000), (7, 40, 6), (13, 17, 4)])
def test_accumulation_is_exactly_the_references(N, J, K, path):
    rng = np.random.default_rng(N * J + K)
    aq = rng.integers(0, 256, (N, K)).astype(np.uint8)
    aq[0] = 255  # the largest products: vpmaddubsw's int16 pair sums would saturate here
    z = rng.integers(0, 256, N).astype(np.int32)
    Wq = rng.integers(-127, 128, (J, K)).astype(np.int8)
    Wq[0] = 127
    rowsum = Wq.astype(np.int32).sum(axis=1, dtype=np.int32)
    acc = _core.int8_accumulate(aq, z, Wq, rowsum, path=path)
    assert acc.dtype == np.int32 and np.array_equal(acc, ref.int8_accumulate(aq, z, Wq, rowsum))


def test_a_wrong_row_sum_or_path_is_refused():
    aq, z, Wq = np.zeros((2, 3), np.uint8), np.zeros(2, np.int32), np.ones((4, 3), np.int8)
    with pytest.raises(ValueError, match=r"rowsum\[0\] is not the sum"):
        _core.int8_accumulate(aq, z, Wq, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="path must be one of"):
        _core.int8_accumulate(aq, z, Wq, np.full(4, 3, np.int32), path="amx")


@pytest.mark.parametrize("path", PATHS)
def test_the_extremes_fit_and_longer_reductions_are_refused(path):
    K = ref._INT8_MAX_K
    acc = _core.int8_accumulate(np.full((1, K), 255, np.uint8), np.zeros(1, np.int32), np.full((1, K), 127, np.int8),
                                np.array([127 * K], np.int32), path=path)
    assert acc[0, 0] == 255 * 127 * K
    acc = _core.int8_accumulate(np.zeros((1, K), np.uint8), np.array([255], np.int32), np.full((1, K), 127, np.int8),
                                np.array([127 * K], np.int32), path=path)
    assert acc[0, 0] == -255 * 127 * K
    with pytest.raises(ValueError, match=f"at most {K} long"):
        _core.int8_accumulate(np.zeros((1, K + 1), np.uint8), np.zeros(1, np.int32), np.zeros((1, K + 1), np.int8),
                              np.zeros(1, np.int32))


def test_bad_arguments_name_themselves():
    aq, z, Wq, r = np.zeros((2, 3), np.uint8), np.zeros(2, np.int32), np.zeros((4, 3), np.int8), np.zeros(4, np.int32)
    with pytest.raises(TypeError, match="aq must have dtype uint8"):
        _core.int8_accumulate(aq.astype(np.int8), z, Wq, r)
    with pytest.raises(ValueError, match=r"Wq must have shape \(4, 3\)|rowsum must have shape"):
        _core.int8_accumulate(aq, z, Wq, np.zeros(5, np.int32))
    with pytest.raises(TypeError, match="a must have dtype float32"):
        _core.quantize_rows_u8(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"a must have shape \(N, K\)"):
        _core.quantize_rows_u8(np.zeros(3, np.float32))
