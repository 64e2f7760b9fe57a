"""Property-based checks (hypothesis): random layer types, sizes (1 included), layers, directions, layouts and
lengths against the reference composition, with a bounded number of examples so the suite stays fast."""

import numpy as np
from helpers import KINDS, layer_case, rel_err
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), T=st.integers(1, 5), N=st.integers(1, 4), I=st.integers(1, 6),
       H=st.integers(1, 9), L=st.integers(1, 3), bi=st.booleans(), batch_first=st.booleans(),
       given_state=st.booleans(), seed=st.integers(0, 2**16))
def test_layers_match_reference(kind, T, N, I, H, L, bi, batch_first, given_state, seed):
    m, S, x, s0, dout, ds_n, (want_out, want_s_n, want_dx, want_ds0, want_g) = layer_case(
        np.random.default_rng(seed), kind, T, N, I, H, L, bi, batch_first, given_state, "float64", seed)

    def user(a):
        return a.transpose(1, 0, 2) if batch_first else a

    if S == 2:
        out, s_n = m(user(x), tuple(s0) if given_state else None)
        dx, ds0 = m.backward(user(dout), tuple(ds_n))
    else:
        out, h_n = m(user(x), s0[0] if given_state else None)
        dx, dh0 = m.backward(user(dout), ds_n[0])
        s_n, ds0 = [h_n], [dh0]
    assert rel_err(out, user(want_out)) < 1e-10 and rel_err(dx, user(want_dx)) < 1e-10
    for a, b in list(zip(s_n, want_s_n)) + list(zip(ds0, want_ds0)):
        assert rel_err(a, b) < 1e-10
    for k, g in want_g.items():
        assert rel_err(m.grads[k], g) < 1e-10, k


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data(), I=st.integers(1, 4), H=st.integers(1, 6),
       bi=st.booleans(), seed=st.integers(0, 2**16))
def test_lengths_equal_each_sequence_alone(kind, data, I, H, bi, seed):
    make, _, _, S = KINDS[kind]
    T = data.draw(st.integers(1, 6))
    lengths = data.draw(st.lists(st.integers(1, T), min_size=1, max_size=4))
    N = len(lengths)
    rng = np.random.default_rng(seed)
    m = make(I, H, 1, bidirectional=bi, dtype="float64", seed=seed)
    x = rng.standard_normal((T, N, I))
    out, fin = m(x, lengths=lengths)
    fin = fin[0] if S == 2 else fin
    for n, ln in enumerate(lengths):
        o, f = m(x[:ln, n:n + 1])
        f = f[0] if S == 2 else f
        assert rel_err(out[:ln, n:n + 1], o) < 1e-12 and not out[ln:, n].any()
        assert rel_err(fin[:, n:n + 1], f) < 1e-12
