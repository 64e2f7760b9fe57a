// LSTM kernels: fused element-wise gate passes and the BLAS-shaped forward / backward time loops.
#include "lstm.h"

#include <algorithm>

#include "blas.h"

namespace pylstm {

index_t lstm_cache_size(index_t T, index_t N, index_t H) {
  // [T][N][G*H] activated gates, then [T][N][H] c_t, then [T][N][H] tanh(c_t).
  return T * N * (kLstmGates * H + 2 * H);
}

index_t lstm_workspace_size(Pass pass, index_t T, index_t N, index_t /*I*/, index_t H) {
  const index_t GH = kLstmGates * H;
  switch (pass) {
    case Pass::Inference:  // summed bias, then the input projections of all steps
      return GH + T * N * GH;
    case Pass::TrainingForward:  // summed bias; the projections live in the cache
      return GH;
    case Pass::Backward:  // bias-gradient column sums; the running dh and dc live in the dh0 / dc0 outputs
      return GH;
  }
  return 0;
}

template <typename Real>
void lstm_pointwise_forward(Real* h, index_t ldh, Real* c, Real* tc, Real* gates, const Real* c_prev,
                            const Real* bias, index_t N, index_t H) {
  const index_t GH = kLstmGates * H;
  for (index_t n = 0; n < N; ++n) {
    Real* a = gates + n * GH;
    const Real* cp = c_prev ? c_prev + n * H : nullptr;
    Real* cn = c + n * H;
    Real* hn = h + n * ldh;
    for (index_t j = 0; j < H; ++j) {
      Real ai = a[j], af = a[H + j], ag = a[2 * H + j], ao = a[3 * H + j];
      if (bias) {
        ai += bias[j];
        af += bias[H + j];
        ag += bias[2 * H + j];
        ao += bias[3 * H + j];
      }
      const Real i = sigmoid(ai), f = sigmoid(af), g = std::tanh(ag), o = sigmoid(ao);
      const Real cnew = f * (cp ? cp[j] : Real(0)) + i * g;  // c may alias c_prev: read first
      const Real tcn = std::tanh(cnew);
      a[j] = i;
      a[H + j] = f;
      a[2 * H + j] = g;
      a[3 * H + j] = o;
      cn[j] = cnew;
      if (tc) tc[n * H + j] = tcn;
      hn[j] = o * tcn;
    }
  }
}

template <typename Real>
void lstm_pointwise_backward(Real* dgates, Real* dc, const Real* dh, const Real* dy, index_t lddy,
                             const Real* c_prev, const Real* tc, index_t N, index_t H) {
  const index_t GH = kLstmGates * H;
  for (index_t n = 0; n < N; ++n) {
    Real* a = dgates + n * GH;
    Real* dcn = dc + n * H;
    const Real* dhn = dh + n * H;
    const Real* dyn = dy ? dy + n * lddy : nullptr;
    const Real* cp = c_prev ? c_prev + n * H : nullptr;
    const Real* tcn = tc + n * H;
    for (index_t j = 0; j < H; ++j) {
      const Real i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
      const Real t = tcn[j];
      const Real dht = dhn[j] + (dyn ? dyn[j] : Real(0));
      const Real dct = dcn[j] + dht * o * (Real(1) - t * t);
      const Real cprev = cp ? cp[j] : Real(0);
      a[j] = dct * g * i * (Real(1) - i);
      a[H + j] = dct * cprev * f * (Real(1) - f);
      a[2 * H + j] = dct * i * (Real(1) - g * g);
      a[3 * H + j] = dht * t * o * (Real(1) - o);
      dcn[j] = dct * f;
    }
  }
}

template <typename Real>
void lstm_forward(Real* y, index_t ldy, Real* h_n, Real* c_n, Real* cache, Real* work, const Real* x,
                  const Real* h0, const Real* c0, const Real* W_ih, const Real* W_hh, const Real* b_ih,
                  const Real* b_hh, index_t T, index_t N, index_t I, index_t H, bool reverse) {
  const index_t GH = kLstmGates * H;
  Real* bias = nullptr;
  if (b_ih) {
    bias = work;
    for (index_t j = 0; j < GH; ++j) bias[j] = b_ih[j] + b_hh[j];
  }
  Real* gates = cache ? cache : work + GH;               // [T][N][GH]
  Real* cs = cache ? cache + T * N * GH : nullptr;       // [T][N][H], training only
  Real* tcs = cache ? cs + T * N * H : nullptr;          // [T][N][H], training only

  // All steps' input projections in one GEMM: gates = x W_ihᵀ, (T·N × I)·(I × GH).
  gemm(false, true, T * N, GH, I, Real(1), x, I, W_ih, I, Real(0), gates, GH);

  // In inference c_n is the running cell state; in training each c_t has its own slot in the cache.
  if (!cache) {
    if (c0) std::copy(c0, c0 + N * H, c_n);
    else std::fill(c_n, c_n + N * H, Real(0));
  }
  const Real* h_prev = h0;  // nullptr: zero state, so the first recurrent GEMM is skipped
  index_t ld_prev = H;
  const Real* c_prev = cache ? c0 : c_n;
  for (index_t s = 0; s < T; ++s) {
    const index_t t = reverse ? T - 1 - s : s;
    Real* g = gates + t * N * GH;
    if (h_prev) gemm(false, true, N, GH, H, Real(1), h_prev, ld_prev, W_hh, H, Real(1), g, GH);
    Real* yt = y + t * N * ldy;
    Real* c = cache ? cs + t * N * H : c_n;
    lstm_pointwise_forward(yt, ldy, c, cache ? tcs + t * N * H : nullptr, g, c_prev, bias, N, H);
    h_prev = yt;
    ld_prev = ldy;
    c_prev = c;
  }
  for (index_t n = 0; n < N; ++n) std::copy(h_prev + n * ld_prev, h_prev + n * ld_prev + H, h_n + n * H);
  if (cache) std::copy(c_prev, c_prev + N * H, c_n);
}

template <typename Real>
void lstm_backward(Real* dx, Real* dh0, Real* dc0, Real* dW_ih, Real* dW_hh, Real* db_ih, Real* db_hh, Real* cache,
                   Real* work, const Real* dy, index_t lddy, const Real* dh_n, const Real* dc_n, const Real* x,
                   const Real* y, index_t ldy, const Real* h0, const Real* c0, const Real* W_ih, const Real* W_hh,
                   index_t T, index_t N, index_t I, index_t H, bool reverse) {
  const index_t GH = kLstmGates * H;
  Real* da = cache;                              // [T][N][GH] gates in, pre-activation gradients out
  const Real* cs = cache + T * N * GH;           // [T][N][H]
  const Real* tcs = cs + T * N * H;              // [T][N][H]
  const index_t t_first = reverse ? T - 1 : 0;   // the step the forward processed first

  // dh0 / dc0 carry the running gradients w.r.t. (h_t, c_t) and end as those w.r.t. (h0, c0).
  if (dh_n) std::copy(dh_n, dh_n + N * H, dh0);
  else std::fill(dh0, dh0 + N * H, Real(0));
  if (dc_n) std::copy(dc_n, dc_n + N * H, dc0);
  else std::fill(dc0, dc0 + N * H, Real(0));

  for (index_t s = 0; s < T; ++s) {
    const index_t t = reverse ? s : T - 1 - s;
    const Real* c_prev = t == t_first ? c0 : cs + (reverse ? t + 1 : t - 1) * N * H;
    Real* dat = da + t * N * GH;
    lstm_pointwise_backward(dat, dc0, dh0, dy ? dy + t * N * lddy : nullptr, lddy, c_prev, tcs + t * N * H, N, H);
    // dh_{t-1} = da_t W_hh, (N × GH)·(GH × H)
    gemm(false, false, N, H, GH, Real(1), dat, GH, W_hh, H, Real(0), dh0, H);
  }

  // The rest are sums over all steps, each one GEMM over the stacked T·N rows.
  gemm(false, false, T * N, I, GH, Real(1), da, GH, W_ih, I, Real(1), dx, I);   // dx += da W_ih
  gemm(true, false, GH, I, T * N, Real(1), da, GH, x, I, Real(1), dW_ih, I);    // dW_ih += daᵀ x
  // dW_hh += daᵀ h_prev: h_prev of each step is y of the step processed before it, h0 for the first.
  if (T > 1) {
    const Real* da_rec = reverse ? da : da + N * GH;
    const Real* y_prev = reverse ? y + N * ldy : y;
    gemm(true, false, GH, H, (T - 1) * N, Real(1), da_rec, GH, y_prev, ldy, Real(1), dW_hh, H);
  }
  if (h0) gemm(true, false, GH, H, N, Real(1), da + t_first * N * GH, GH, h0, H, Real(1), dW_hh, H);
  if (db_ih) {  // both biases enter a identically, so both get the column sums of da
    Real* colsum = work;
    std::fill(colsum, colsum + GH, Real(0));
    for (index_t r = 0; r < T * N; ++r) {
      const Real* row = da + r * GH;
      for (index_t j = 0; j < GH; ++j) colsum[j] += row[j];
    }
    for (index_t j = 0; j < GH; ++j) {
      db_ih[j] += colsum[j];
      db_hh[j] += colsum[j];
    }
  }
}

#define PYLSTM_INSTANTIATE(Real)                                                                              \
  template void lstm_pointwise_forward<Real>(Real*, index_t, Real*, Real*, Real*, const Real*, const Real*,    \
                                             index_t, index_t);                                               \
  template void lstm_pointwise_backward<Real>(Real*, Real*, const Real*, const Real*, index_t, const Real*,     \
                                              const Real*, index_t, index_t);                                 \
  template void lstm_forward<Real>(Real*, index_t, Real*, Real*, Real*, Real*, const Real*, const Real*,       \
                                   const Real*, const Real*, const Real*, const Real*, const Real*, index_t,  \
                                   index_t, index_t, index_t, bool);                                          \
  template void lstm_backward<Real>(Real*, Real*, Real*, Real*, Real*, Real*, Real*, Real*, Real*, const Real*, \
                                    index_t, const Real*, const Real*, const Real*, const Real*, index_t,      \
                                    const Real*, const Real*, const Real*, const Real*, index_t, index_t,      \
                                    index_t, index_t, bool);
PYLSTM_INSTANTIATE(float)
PYLSTM_INSTANTIATE(double)
#undef PYLSTM_INSTANTIATE

}  // namespace pylstm
