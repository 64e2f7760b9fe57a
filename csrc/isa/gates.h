// The element-wise gate math of every cell for one batch row, as plain loops: the readable specification of each
// kernel and, compiled per ISA level with that level's flags, the vectorised kernels themselves (kernels.inc).
// Each follows the equations of shared/math.md; the cell headers (lstm.h, gru.h, rnn.h) say what every array holds.
#pragma once

#include "activations.h"
#include "common.h"
#include "rnn.h"  // Nonlinearity

namespace pylstm {
namespace PYLSTM_ISA_NS {

// ---- LSTM (gates i, f, g, o) ----

// One batch row of each element-wise kernel. Every pointer is a separate restrict parameter: that is what lets
// the compiler prove the gate blocks of a row disjoint and vectorise the loop without runtime alias checks.
template <typename Real>
inline void lstm_row_forward(Real* __restrict h, Real* __restrict c, Real* __restrict tc, Real* __restrict ai,
                             Real* __restrict af, Real* __restrict ag, Real* __restrict ao,
                             const Real* __restrict c_prev, const Real* __restrict bi, const Real* __restrict bf,
                             const Real* __restrict bg, const Real* __restrict bo, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    const Real i = act_sigmoid(ai[j] + bi[j]);
    const Real f = act_sigmoid(af[j] + bf[j]);
    const Real g = act_tanh(ag[j] + bg[j]);
    const Real o = act_sigmoid(ao[j] + bo[j]);
    const Real cnew = f * c_prev[j] + i * g;
    const Real t = act_tanh(cnew);
    ai[j] = i;
    af[j] = f;
    ag[j] = g;
    ao[j] = o;
    c[j] = cnew;
    tc[j] = t;
    h[j] = o * t;
  }
}

template <typename Real>
inline void lstm_row_backward(Real* __restrict ai, Real* __restrict af, Real* __restrict ag, Real* __restrict ao,
                              Real* __restrict dc, const Real* __restrict dh, const Real* __restrict dy,
                              const Real* __restrict c_prev, Real* __restrict tc, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    const Real i = ai[j], f = af[j], g = ag[j], o = ao[j], t = tc[j];
    const Real dht = dh[j] + dy[j];
    const Real dct = dc[j] + dht * o * (Real(1) - t * t);
    ai[j] = dct * g * i * (Real(1) - i);
    af[j] = dct * c_prev[j] * f * (Real(1) - f);
    ag[j] = dct * i * (Real(1) - g * g);
    ao[j] = dht * t * o * (Real(1) - o);
    dc[j] = dct * f;
    tc[j] = o * t;  // o is about to be lost: keep o ⊙ tanh(c), the projection's input, for dW_hr
  }
}

// With peephole connections (ONNX's P; Gers & Schmidhuber 2000): i and f also see c_{t-1}, o sees c_t.
//   i = σ(a_i + p_i ⊙ c_{t-1}),  f = σ(a_f + p_f ⊙ c_{t-1}),  c_t = f ⊙ c_{t-1} + i ⊙ g,  o = σ(a_o + p_o ⊙ c_t)
// pi, pf, po are the row's H peephole weights of each gate.
template <typename Real>
inline void lstm_row_forward_peep(Real* __restrict h, Real* __restrict c, Real* __restrict tc, Real* __restrict ai,
                                  Real* __restrict af, Real* __restrict ag, Real* __restrict ao,
                                  const Real* __restrict c_prev, const Real* __restrict bi, const Real* __restrict bf,
                                  const Real* __restrict bg, const Real* __restrict bo, const Real* __restrict pi,
                                  const Real* __restrict pf, const Real* __restrict po, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    const Real cp = c_prev[j];
    const Real i = act_sigmoid(ai[j] + bi[j] + pi[j] * cp);
    const Real f = act_sigmoid(af[j] + bf[j] + pf[j] * cp);
    const Real g = act_tanh(ag[j] + bg[j]);
    const Real cnew = f * cp + i * g;
    const Real o = act_sigmoid(ao[j] + bo[j] + po[j] * cnew);
    const Real t = act_tanh(cnew);
    ai[j] = i;
    af[j] = f;
    ag[j] = g;
    ao[j] = o;
    c[j] = cnew;
    tc[j] = t;
    h[j] = o * t;
  }
}

// The backward of lstm_row_forward_peep: as lstm_row_backward, plus the peepholes' paths (o's through c_t, i's
// and f's into c_{t-1}); c is c_t, and dpi, dpf, dpo accumulate the peephole weights' gradients.
template <typename Real>
inline void lstm_row_backward_peep(Real* __restrict ai, Real* __restrict af, Real* __restrict ag,
                                   Real* __restrict ao, Real* __restrict dc, const Real* __restrict dh,
                                   const Real* __restrict dy, const Real* __restrict c_prev, Real* __restrict tc,
                                   const Real* __restrict c, const Real* __restrict pi, const Real* __restrict pf,
                                   const Real* __restrict po, Real* __restrict dpi, Real* __restrict dpf,
                                   Real* __restrict dpo, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    const Real i = ai[j], f = af[j], g = ag[j], o = ao[j], t = tc[j], cp = c_prev[j];
    const Real dht = dh[j] + dy[j];
    const Real dao = dht * t * o * (Real(1) - o);
    const Real dct = dc[j] + dht * o * (Real(1) - t * t) + dao * po[j];
    const Real dai = dct * g * i * (Real(1) - i);
    const Real daf = dct * cp * f * (Real(1) - f);
    ai[j] = dai;
    af[j] = daf;
    ag[j] = dct * i * (Real(1) - g * g);
    ao[j] = dao;
    dc[j] = dct * f + dai * pi[j] + daf * pf[j];
    dpi[j] += dai * cp;
    dpf[j] += daf * cp;
    dpo[j] += dao * c[j];
    tc[j] = o * t;
  }
}

// ---- GRU (gates r, z, n) ----

// The row kernels take every array as its own restrict parameter: that is what lets the compiler vectorise them.
// Per row: ar, az, an are the r, z, n blocks (x-projections in, activations or gradients out), k the fourth slot,
// g the recurrent products h W_hhᵀ without bias (or, in backward, the recurrent-side gradients), p = h_{t-1}.

// Linear before reset: r, z, n and h from the x- and h-projections; keeps k = h W_hnᵀ + b_hn. The row is n units
// long; g, bi and bh hold their r, z and n blocks S apart (S = H for a whole row, S > n for a block of units).
template <typename Real>
inline void lbr_forward_row(Real* __restrict h, Real* __restrict ar, Real* __restrict az, Real* __restrict an,
                            Real* __restrict k, const Real* __restrict g, const Real* __restrict p,
                            const Real* __restrict bi, const Real* __restrict bh, index_t n, index_t S, index_t Sg) {
  for (index_t j = 0; j < n; ++j) {
    const Real r = act_sigmoid(ar[j] + bi[j] + g[j] + bh[j]);
    const Real z = act_sigmoid(az[j] + bi[S + j] + g[Sg + j] + bh[S + j]);
    const Real kk = g[2 * Sg + j] + bh[2 * S + j];
    const Real nn = act_tanh(an[j] + bi[2 * S + j] + r * kk);
    ar[j] = r;
    az[j] = z;
    an[j] = nn;
    k[j] = kk;
    h[j] = (Real(1) - z) * nn + z * p[j];
  }
}

// Original form, first half: r and z, and k = r ⊙ h_{t-1} for the n-block product. The row is n units long; g, bi
// and bh hold their r and z blocks S apart.
template <typename Real>
inline void orig_forward_rz_row(Real* __restrict ar, Real* __restrict az, Real* __restrict k,
                                const Real* __restrict g, const Real* __restrict p, const Real* __restrict bi,
                                const Real* __restrict bh, index_t n, index_t S) {
  for (index_t j = 0; j < n; ++j) {
    const Real r = act_sigmoid(ar[j] + bi[j] + g[j] + bh[j]);
    ar[j] = r;
    az[j] = act_sigmoid(az[j] + bi[S + j] + g[S + j] + bh[S + j]);
    k[j] = r * p[j];
  }
}

// Original form, second half: n from (r ⊙ h) W_hnᵀ (g is the n-block of the products here), and h.
template <typename Real>
inline void orig_forward_n_row(Real* __restrict h, const Real* __restrict az, Real* __restrict an,
                               const Real* __restrict g, const Real* __restrict p, const Real* __restrict bin,
                               const Real* __restrict bhn, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    const Real nn = act_tanh(an[j] + bin[j] + g[j] + bhn[j]);
    an[j] = nn;
    h[j] = (Real(1) - az[j]) * nn + az[j] * p[j];
  }
}

// Linear before reset, backward of one step. In: (r, z, n), k, the running dh and dy. Out: (da_r, da_z, da_n),
// k = dk = da_n ⊙ r, g = (da_r, da_z, dk) for the recurrent product (its blocks S apart), dh = dh' ⊙ z. The row
// is n units long.
template <typename Real>
inline void lbr_backward_row(Real* __restrict ar, Real* __restrict az, Real* __restrict an, Real* __restrict k,
                             Real* __restrict g, Real* __restrict dh, const Real* __restrict dy,
                             const Real* __restrict p, index_t n, index_t S) {
  for (index_t j = 0; j < n; ++j) {
    const Real r = ar[j], z = az[j], nn = an[j], kk = k[j];
    const Real dht = dh[j] + dy[j];
    const Real da_n = dht * (Real(1) - z) * (Real(1) - nn * nn);
    const Real da_z = dht * (p[j] - nn) * z * (Real(1) - z);
    const Real da_r = da_n * kk * r * (Real(1) - r);
    const Real dk = da_n * r;
    ar[j] = da_r;
    az[j] = da_z;
    an[j] = da_n;
    k[j] = dk;
    g[j] = da_r;
    g[S + j] = da_z;
    g[2 * S + j] = dk;
    dh[j] = dht * z;
  }
}

// Original form, backward, first half: da_n, da_z, and dh = dh' ⊙ z (r stays in its block for the second half).
template <typename Real>
inline void orig_backward_nz_row(Real* __restrict az, Real* __restrict an, Real* __restrict dh,
                                 const Real* __restrict dy, const Real* __restrict p, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    const Real z = az[j], nn = an[j];
    const Real dht = dh[j] + dy[j];
    an[j] = dht * (Real(1) - z) * (Real(1) - nn * nn);
    az[j] = dht * (p[j] - nn) * z * (Real(1) - z);
    dh[j] = dht * z;
  }
}

// Original form, backward, second half: from dk = ∂L/∂(r ⊙ h), da_r and the direct part dk ⊙ r of dh.
template <typename Real>
inline void orig_backward_r_row(Real* __restrict ar, Real* __restrict dh, const Real* __restrict dk,
                                const Real* __restrict p, index_t H) {
  for (index_t j = 0; j < H; ++j) {
    const Real r = ar[j];
    dh[j] += dk[j] * r;
    ar[j] = dk[j] * p[j] * r * (Real(1) - r);
  }
}

// ---- vanilla RNN ----

template <typename Real>
inline Real relu(Real a) {
  return a > Real(0) ? a : (a == a ? Real(0) : a);  // NaN stays NaN
}

template <typename Real>
inline void rnn_row_forward(Real* __restrict h, const Real* __restrict a, const Real* __restrict b, index_t H,
                            Nonlinearity nl) {
  if (nl == Nonlinearity::Tanh)
    for (index_t j = 0; j < H; ++j) h[j] = act_tanh(a[j] + b[j]);
  else if (nl == Nonlinearity::Sigmoid)
    for (index_t j = 0; j < H; ++j) h[j] = act_sigmoid(a[j] + b[j]);
  else
    for (index_t j = 0; j < H; ++j) h[j] = relu(a[j] + b[j]);
}

template <typename Real>
inline void rnn_row_backward(Real* __restrict da, const Real* __restrict dh, const Real* __restrict dy,
                             const Real* __restrict h, index_t H, Nonlinearity nl) {
  if (nl == Nonlinearity::Tanh)
    for (index_t j = 0; j < H; ++j) da[j] = (dh[j] + dy[j]) * (Real(1) - h[j] * h[j]);
  else if (nl == Nonlinearity::Sigmoid)  // σ' = σ (1 − σ), at most 1/4
    for (index_t j = 0; j < H; ++j) da[j] = (dh[j] + dy[j]) * (h[j] * (Real(1) - h[j]));
  else
    for (index_t j = 0; j < H; ++j) da[j] = h[j] > Real(0) ? dh[j] + dy[j] : Real(0);
}

}  // namespace PYLSTM_ISA_NS
}  // namespace pylstm
