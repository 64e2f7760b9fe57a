// Vanilla RNN kernels: element-wise passes and the BLAS-shaped forward / backward time loops.
#include "rnn.h"

#include <algorithm>
#include <type_traits>

#include "blas.h"
#include "kernels.h"
#include "parallel.h"
#include "profile.h"
#include "sequence.h"

namespace pylstm {

index_t rnn_cache_size(index_t T, index_t N, index_t H) { return T * N * H; }

namespace {

// An RNN call's workspace, by slot.
template <typename Real>
struct RnnWork {
  Real* bias;    // [H] b_ih + b_hh (forward), the bias-gradient column sums (backward)
  Real* zeros;   // [N][H] zeros for an absent dy (backward)
  Real* gates;   // [block][N][H] inference: the input projections of one block of steps
  Real* packed;  // the fused loop's packed weights (forward passes; 64-byte aligned at use); backward [H][H]: the
                 // fused loop's copy of W_hh by column groups (sequence.h, backward_groups_size)
};

// The one layout of that workspace: its size, and with `base` the slots' pointers in `w` (packed weights sized for
// float32, as kernels.h's static_assert allows for float64).
template <typename Real>
index_t rnn_layout(Pass pass, index_t T, index_t N, index_t I, index_t H, Real* base = nullptr,
                   RnnWork<Real>* w = nullptr) {
  const bool inference = pass == Pass::Inference, forward = pass != Pass::Backward;
  RnnWork<Real> unused{};
  RnnWork<Real>& s = w ? *w : unused;
  Real** const slots[] = {&s.bias, &s.zeros, &s.gates, &s.packed};
  const index_t sizes[] = {H, N * H, inference ? detail::inference_block_steps(T, N, I) * N * H : 0,
                           forward ? detail::single_fused_packed_size<float>(1, I, H)
                                   : detail::backward_groups_size(N, H, H)};
  return detail::lay_out(base, slots, sizes);
}

}  // namespace

index_t rnn_workspace_size(Pass pass, index_t T, index_t N, index_t I, index_t H) {
  return rnn_layout<float>(pass, T, N, I, H);
}

template <typename Real>
void rnn_pointwise_forward(Real* h, index_t ldh, const Real* a, const Real* bias, index_t N, index_t H,
                           Nonlinearity nl) {
  kernels().of<Real>().rnn_forward(h, ldh, a, bias, N, H, nl);
}

template <typename Real>
void rnn_pointwise_backward(Real* da, const Real* dh, const Real* dy, index_t lddy, const Real* h, index_t ldh,
                            index_t N, index_t H, Nonlinearity nl) {
  kernels().of<Real>().rnn_backward(da, dh, dy, lddy, h, ldh, N, H, nl);
}

template <typename Real>
void rnn_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, Real* y, index_t ldy,
                 Real* h_n, Real* cache, Real* work, Nonlinearity nl, Run run, const RecurrentDropout<Real>& rd,
                 const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H;
  const Real *W_ih = w.W_ih, *W_hh = w.W_hh, *b_ih = w.b_ih, *b_hh = w.b_hh;
  const bool reverse = run.reverse;
  const index_t* batch_sizes = run.batch_sizes;
  detail::check_run(run);
  detail::check_recurrent_dropout(rd, cache != nullptr);
  if (zone.on()) throw std::invalid_argument("zoneout is an option of the LSTM and the GRU, not the RNN");
  blas_int(T * N, "T*N");  // the largest BLAS size of the call: refuse it before any work
  if (batch_sizes) detail::zero_padding_rows(y, ldy, H, batch_sizes, T, N);
  const Real* h0_product = detail::mask_initial_state(rd, h0, T, N, H, batch_sizes != nullptr);
  RnnWork<Real> ws;
  rnn_layout(cache ? Pass::TrainingForward : Pass::Inference, T, N, I, H, work, &ws);
  Real* bias = ws.bias;                                    // [H]
  Real* a_all = cache ? cache : ws.gates;                  // [T][N][H] training, [block][N][H] inference
  for (index_t j = 0; j < H; ++j) bias[j] = b_ih ? b_ih[j] + b_hh[j] : Real(0);
  const index_t block = cache ? T : detail::inference_block_steps(T, N, I);
  if (fused_loops()) {  // the fused loop; the BLAS-per-step loop below is its reference shape
    blas_int(H, "H"), blas_int(I, "I");
    detail::FusedSingleT<Real> F{};
    F.y = y, F.ldy = ldy, F.a = a_all, F.lda = H;
    F.packed = detail::align64(ws.packed);
    F.x = x, F.h0 = h0, F.W_ih = W_ih, F.W_hh = W_hh, F.bi = bias;
    F.T = T, F.N = N, F.I = I, F.H = H, F.block = block, F.reverse = reverse;
    F.rows = detail::rows_split(detail::kRnnRowSplit, N, H, index_t(sizeof(Real)), true);
    if (F.rows) count_row_split_run();
    F.parts = F.rows ? static_cast<int>(std::min<index_t>(get_num_threads(), N)) : get_num_threads();
    F.cell = detail::rnn_cell(nl);
    F.batch_sizes = batch_sizes, F.h0_product = h0_product, F.rmask = rd.mask, F.rmasked = rd.masked;
    const auto run = kernels().of<Real>().one_state_loop;
    parallel_steps([&F, run](int tid, int nt) { run(F, tid, nt); }, 2.0 * N * H * (H + I));
    detail::final_rows(h_n, H, y, ldy, batch_sizes, T, N, reverse);
    return;
  }
  index_t block_t0 = 0;
  const Real* h_prev = h0;  // nullptr: zero state, the first recurrent GEMM is skipped
  index_t ld_prev = H;
  for (index_t s = 0; s < T; ++s) {
    const index_t t = reverse ? T - 1 - s : s;
    if (s % block == 0) block_t0 = detail::project_block(a_all, H, x, W_ih, s, block, T, N, I, H, reverse);
    Real* a = a_all + (t - block_t0) * N * H;
    if (h_prev) gemm(false, true, N, H, H, Real(1), h_prev, ld_prev, W_hh, H, Real(1), a, H);
    Real* yt = y + t * N * ldy;
    rnn_pointwise_forward(yt, ldy, a, bias, N, H, nl);
    h_prev = yt;
    ld_prev = ldy;
  }
  detail::copy_rows(h_n, h_prev, ld_prev, N, H);
}

template <typename Real>
void rnn_backward(const Dims& d, const Weights<Real>& w, const Grads<Real>& g, const Recorded<Real>& fwd,
                  const OutputGrads<Real>& out, Real* dx, Real* dh0, Real* cache, Real* work, Nonlinearity nl,
                  Run run, const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H;
  const Real *W_ih = w.W_ih, *W_hh = w.W_hh;
  Real *dW_ih = g.dW_ih, *dW_hh = g.dW_hh, *db_ih = g.db_ih, *db_hh = g.db_hh;
  const Real *x = fwd.x, *y = fwd.y, *h0 = fwd.h0, *dy = out.dy, *dh_n = out.dh_n;
  const index_t ldy = fwd.ldy, lddy = out.lddy;
  const bool reverse = run.reverse;
  const index_t* batch_sizes = run.batch_sizes;
  detail::check_run(run);
  detail::check_recurrent_dropout(rd, true);
  if (zone.on()) throw std::invalid_argument("zoneout is an option of the LSTM and the GRU, not the RNN");
  blas_int(T * N, "T*N");
  Real* da = cache;           // [T][N][H] pre-activation gradients
  RnnWork<Real> ws;
  rnn_layout(Pass::Backward, T, N, I, H, work, &ws);
  Real* colsum = ws.bias;      // [H]
  Real* zeros = ws.zeros;      // [N][H]
  std::fill(zeros, zeros + N * H, Real(0));
  const auto dys = detail::step_rows(dy, lddy, N, static_cast<const Real*>(zeros));
  // The running gradient ∂L/∂h_t lives in the dh0 output, which it ends as.
  Real* const dh = dh0;
  detail::copy_or_zero(dh, dh_n, N * H);
  const bool fused = fused_loops();
  if (fused) {  // the fused loop; the BLAS-per-step loop below is its reference shape
    detail::FusedSingleBackwardT<Real> B{};
    B.a = da, B.dh = dh, B.y = y, B.ldy = ldy, B.h0 = h0 ? h0 : zeros, B.dy = dys.p, B.lddy = dys.ld;
    B.dy_step = dys.step, B.W_hh = W_hh, B.T = T, B.N = N, B.H = H, B.parts = get_num_threads();
    B.W_groups = detail::backward_groups_size(N, H, H) ? detail::align64(ws.packed) : nullptr;
    B.reverse = reverse, B.batch_sizes = batch_sizes;
    B.cell = detail::rnn_cell(nl);
    B.rmask = rd.mask;
    const auto run = kernels().of<Real>().one_state_loop_backward;
    parallel_steps([&B, run](int tid, int nt) { run(B, tid, nt); }, 2.0 * N * H * H);
  }
  for (index_t s = 0; s < T && !fused; ++s) {
    const index_t t = reverse ? s : T - 1 - s;
    Real* dat = da + t * N * H;
    rnn_pointwise_backward(dat, dh, dys.at(t), dys.ld, y + t * N * ldy, ldy, N, H, nl);
    gemm(false, false, N, H, H, Real(1), dat, H, W_hh, H, Real(0), dh, H);  // dh_{t-1} = da_t W_hh
  }
  PYLSTM_PHASE_POOL(kPhaseGradientGemm);
  detail::input_gradients(dx, dW_ih, da, H, x, W_ih, T * N, I, H);
  // Under recurrent dropout the products read the masked states the forward recorded.
  const Real* h0q = rd.mask && h0 ? rd.masked + T * N * H : h0;
  detail::recurrent_weight_gradient(dW_hh, da, H, rd.mask ? rd.masked : y, rd.mask ? H : ldy, h0q, T, N, H, H,
                                    reverse);
  if (batch_sizes && reverse && h0q)
    detail::recurrent_weight_gradient_late_starts(dW_hh, da, H, h0q, batch_sizes, T, N, H, H);
  if (db_ih) detail::add_column_sums(db_ih, db_hh, colsum, da, H, T * N, H);
}

#define PYLSTM_INSTANTIATE(Real)                                                                                \
  template void rnn_pointwise_forward<Real>(Real*, index_t, const Real*, const Real*, index_t, index_t,          \
                                            Nonlinearity);                                                       \
  template void rnn_pointwise_backward<Real>(Real*, const Real*, const Real*, index_t, const Real*, index_t,      \
                                             index_t, index_t, Nonlinearity);                                    \
  template void rnn_forward<Real>(const Dims&, const Weights<Real>&, const Real*, const Real*, Real*, index_t, \
                                  Real*, Real*, Real*, Nonlinearity, Run, const RecurrentDropout<Real>&,             \
                                  const Zoneout<Real>&);                                                             \
  template void rnn_backward<Real>(const Dims&, const Weights<Real>&, const Grads<Real>&, const Recorded<Real>&,  \
                                   const OutputGrads<Real>&, Real*, Real*, Real*, Real*, Nonlinearity, Run,         \
                                   const RecurrentDropout<Real>&, const Zoneout<Real>&);
PYLSTM_INSTANTIATE(float)
PYLSTM_INSTANTIATE(double)
#undef PYLSTM_INSTANTIATE

}  // namespace pylstm
