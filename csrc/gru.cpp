// GRU kernels: element-wise passes for both forms and the BLAS-shaped forward / backward time loops.
#include "gru.h"

#include <algorithm>
#include <type_traits>

#include "blas.h"
#include "kernels.h"
#include "parallel.h"
#include "profile.h"
#include "sequence.h"

namespace pylstm {

index_t gru_cache_size(index_t T, index_t N, index_t H) { return T * N * 4 * H; }

namespace {

// A GRU call's workspace, by slot.
template <typename Real>
struct GruWork {
  Real* bias;    // [6H] b_ih then b_hh (forward); [4H] of it the bias-gradient column sums (backward)
  Real* hg;      // [N][3H] one step's recurrent products (forward), or dg (backward)
  Real* zeros;   // [N][H] zeros for an absent h0 or dy
  Real* k;       // [N][H] k = h W_hnᵀ + b_hn (inference), or ∂L/∂k (backward, the original form)
  Real* gates;   // [block][N][3H] inference: the input projections of one block of steps
  Real* packed;  // the fused loop's packed weights (forward passes; 64-byte aligned at use); backward [3H][H]: the
                 // fused loop's copy of W_hh by column groups (sequence.h, backward_groups_size)
};

// The one layout of that workspace: its size, and with `base` the slots' pointers in `w` (packed weights sized for
// float32, as kernels.h's static_assert allows for float64).
template <typename Real>
index_t gru_layout(Pass pass, index_t T, index_t N, index_t I, index_t H, Real* base = nullptr,
                   GruWork<Real>* w = nullptr) {
  const index_t GH = kGruGates * H, NH = N * H;
  const bool inference = pass == Pass::Inference, forward = pass != Pass::Backward;
  GruWork<Real> unused{};
  GruWork<Real>& s = w ? *w : unused;
  Real** const slots[] = {&s.bias, &s.hg, &s.zeros, &s.k, &s.gates, &s.packed};
  const index_t sizes[] = {2 * GH, N * GH, NH, NH, inference ? detail::inference_block_steps(T, N, I) * N * GH : 0,
                           forward ? detail::single_fused_packed_size<float>(kGruGates, I, H)
                                   : detail::backward_groups_size(N, GH, H)};
  return detail::lay_out(base, slots, sizes);
}

}  // namespace

index_t gru_workspace_size(Pass pass, index_t T, index_t N, index_t I, index_t H) {
  return gru_layout<float>(pass, T, N, I, H);
}

template <typename Real>
void gru_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, Real* y, index_t ldy,
                 Real* h_n, Real* cache, Real* work, bool linear_before_reset, Run run,
                 const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H;
  const Real *W_ih = w.W_ih, *W_hh = w.W_hh, *b_ih = w.b_ih, *b_hh = w.b_hh;
  const bool reverse = run.reverse;
  const index_t* batch_sizes = run.batch_sizes;
  detail::check_run(run);
  detail::check_recurrent_dropout(rd, cache != nullptr);
  detail::check_zoneout(zone, cache != nullptr, 1, false);
  blas_int(T * N, "T*N");  // the largest BLAS size of the call: refuse it before any work
  if (batch_sizes) detail::zero_padding_rows(y, ldy, H, batch_sizes, T, N);
  const Real* h0_product = detail::mask_initial_state(rd, h0, T, N, H, batch_sizes != nullptr);
  const auto& K = kernels().of<Real>();
  const index_t GH = kGruGates * H;
  GruWork<Real> ws;
  gru_layout(cache ? Pass::TrainingForward : Pass::Inference, T, N, I, H, work, &ws);
  Real* bi = ws.bias;                    // [3H]
  Real* bh = ws.bias + GH;               // [3H]
  Real *hg = ws.hg, *zeros = ws.zeros, *kbuf = ws.k;
  for (index_t j = 0; j < GH; ++j) {
    bi[j] = b_ih ? b_ih[j] : Real(0);
    bh[j] = b_hh ? b_hh[j] : Real(0);
  }
  std::fill(zeros, zeros + N * H, Real(0));
  // Training: rows of the cache are [r z n k] (4H); inference: [block][N][3H] projections and k in kbuf.
  const index_t lda = cache ? 4 * H : GH;
  Real* a_all = cache ? cache : ws.gates;
  const index_t block = cache ? T : detail::inference_block_steps(T, N, I);
  if (fused_loops()) {  // the fused loop; the BLAS-per-step loop below is its reference shape
    blas_int(GH, "G*H"), blas_int(I, "I");
    detail::FusedSingleT<Real> F{};
    F.y = y, F.ldy = ldy, F.a = a_all, F.lda = lda, F.k = cache ? nullptr : kbuf, F.hg = hg;
    F.packed = detail::align64(ws.packed);
    F.zeros = zeros, F.x = x, F.h0 = h0, F.W_ih = W_ih, F.W_hh = W_hh, F.bi = bi, F.bh = bh;
    F.T = T, F.N = N, F.I = I, F.H = H, F.block = block, F.reverse = reverse;
    F.rows = detail::rows_split(detail::kGruRowSplit, N, H, index_t(sizeof(Real)), linear_before_reset);
    if (F.rows) count_row_split_run();
    F.parts = F.rows ? static_cast<int>(std::min<index_t>(get_num_threads(), N)) : get_num_threads();
    F.cell = linear_before_reset ? detail::OneStateCell::GruResetAfter : detail::OneStateCell::GruResetBefore;
    F.batch_sizes = batch_sizes, F.h0_product = h0_product, F.rmask = rd.mask, F.rmasked = rd.masked;
    F.zone = zone;
    const auto run = kernels().of<Real>().one_state_loop;
    parallel_steps([&F, run](int tid, int nt) { run(F, tid, nt); }, 2.0 * N * GH * (H + I));
    detail::final_rows(h_n, H, y, ldy, batch_sizes, T, N, reverse);
    return;
  }
  index_t block_t0 = 0;
  const Real* h_prev = h0;
  index_t ld_prev = H;
  for (index_t s = 0; s < T; ++s) {
    const index_t t = reverse ? T - 1 - s : s;
    if (s % block == 0) block_t0 = detail::project_block(a_all, lda, x, W_ih, s, block, T, N, I, GH, reverse);
    Real* a = a_all + (t - block_t0) * N * lda;
    Real* k = cache ? a + GH : kbuf;
    const index_t ldk = cache ? lda : H;
    const Real* hp = h_prev ? h_prev : zeros;
    const index_t ldp = h_prev ? ld_prev : H;
    Real* yt = y + t * N * ldy;
    if (linear_before_reset) {
      if (h_prev) gemm(false, true, N, GH, H, Real(1), h_prev, ld_prev, W_hh, H, Real(0), hg, GH);
      else std::fill(hg, hg + N * GH, Real(0));
      K.gru_lbr_forward(yt, ldy, a, lda, k, ldk, hg, hp, ldp, bi, bh, N, H);
    } else {
      if (h_prev) gemm(false, true, N, 2 * H, H, Real(1), h_prev, ld_prev, W_hh, H, Real(0), hg, GH);
      else std::fill(hg, hg + N * GH, Real(0));
      K.gru_orig_forward_rz(a, lda, k, ldk, hg, hp, ldp, bi, bh, N, H);
      if (h_prev) gemm(false, true, N, H, H, Real(1), k, ldk, W_hh + 2 * H * H, H, Real(0), hg + 2 * H, GH);
      K.gru_orig_forward_n(yt, ldy, a, lda, hg, hp, ldp, bi, bh, N, H);
    }
    h_prev = yt;
    ld_prev = ldy;
  }
  detail::copy_rows(h_n, h_prev, ld_prev, N, H);
}

template <typename Real>
void gru_backward(const Dims& d, const Weights<Real>& w, const Grads<Real>& g, const Recorded<Real>& fwd,
                  const OutputGrads<Real>& out, Real* dx, Real* dh0, Real* cache, Real* work, bool linear_before_reset,
                  Run run, const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H;
  const Real *W_ih = w.W_ih, *W_hh = w.W_hh;
  Real *dW_ih = g.dW_ih, *dW_hh = g.dW_hh, *db_ih = g.db_ih, *db_hh = g.db_hh;
  const Real *x = fwd.x, *dy = out.dy, *dh_n = out.dh_n;
  const index_t lddy = out.lddy;
  const bool reverse = run.reverse;
  const index_t* batch_sizes = run.batch_sizes;
  detail::check_run(run);
  detail::check_recurrent_dropout(rd, true);
  detail::check_zoneout(zone, true, 1, false);
  blas_int(T * N, "T*N");
  const auto& K = kernels().of<Real>();
  // The states as the forward's products read them: y and h0, or under recurrent dropout the masked ones it
  // recorded (the carry reads the unmasked y, fwd.y).
  const Real* y = fwd.y;
  const index_t ldy = fwd.ldy;
  const Real* h0 = fwd.h0;
  const Real* yq = rd.mask ? rd.masked : y;
  const index_t ldq = rd.mask ? H : ldy;
  const Real* h0q = rd.mask && h0 ? rd.masked + T * N * H : h0;
  const index_t GH = kGruGates * H, lda = 4 * H;
  GruWork<Real> ws;
  gru_layout(Pass::Backward, T, N, I, H, work, &ws);
  Real *colsum = ws.bias, *dg = ws.hg, *zeros = ws.zeros, *dk = ws.k;  // [4H], [N][3H], [N][H], [N][H]
  std::fill(zeros, zeros + N * H, Real(0));
  const auto dys = detail::step_rows(dy, lddy, N, static_cast<const Real*>(zeros));
  const index_t t_first = reverse ? T - 1 : 0;
  // The running gradient ∂L/∂h_t lives in the dh0 output, which it ends as.
  Real* const dh = dh0;
  detail::copy_or_zero(dh, dh_n, N * H);
  const bool fused = fused_loops();
  if (fused) {  // the fused loop; the BLAS-per-step loop below is its reference shape
    detail::FusedSingleBackwardT<Real> B{};
    B.a = cache, B.dh = dh, B.y = y, B.ldy = ldy, B.h0 = h0 ? h0 : zeros, B.dy = dys.p, B.lddy = dys.ld;
    B.dy_step = dys.step, B.W_hh = W_hh, B.T = T, B.N = N, B.H = H, B.parts = get_num_threads();
    B.W_groups = detail::backward_groups_size(N, GH, H) ? detail::align64(ws.packed) : nullptr;
    B.reverse = reverse, B.dk = dk;
    B.cell = linear_before_reset ? detail::OneStateCell::GruResetAfter : detail::OneStateCell::GruResetBefore;
    B.batch_sizes = batch_sizes;
    B.rmask = rd.mask, B.ym = rd.masked, B.hm0 = rd.mask ? rd.masked + T * N * H : nullptr, B.dhr = dg;
    B.zone = zone;
    const auto run = kernels().of<Real>().one_state_loop_backward;
    parallel_steps([&B, run](int tid, int nt) { run(B, tid, nt); }, 2.0 * N * GH * H);
  }
  for (index_t s = 0; s < T && !fused; ++s) {
    const index_t t = reverse ? s : T - 1 - s;
    Real* a = cache + t * N * lda;
    const Real* hp = t == t_first ? (h0 ? h0 : zeros) : y + (reverse ? t + 1 : t - 1) * N * ldy;
    const index_t ldp = t == t_first ? H : ldy;
    const Real* dyt = dys.at(t);
    if (linear_before_reset) {
      K.gru_lbr_backward(a, lda, a + GH, lda, dg, dh, dyt, dys.ld, hp, ldp, N, H);
      gemm(false, false, N, H, GH, Real(1), dg, GH, W_hh, H, Real(1), dh, H);  // dh_{t-1} += dg W_hh
    } else {
      K.gru_orig_backward_nz(a, lda, dh, dyt, dys.ld, hp, ldp, N, H);
      gemm(false, false, N, H, H, Real(1), a + 2 * H, lda, W_hh + 2 * H * H, H, Real(0), dk, H);  // dk = da_n W_hn
      K.gru_orig_backward_r(a, lda, dh, dk, hp, ldp, N, H);
      gemm(false, false, N, H, 2 * H, Real(1), a, lda, W_hh, H, Real(1), dh, H);  // += (da_r, da_z) W_h[rz]
    }
  }
  const index_t rows = T * N;
  PYLSTM_PHASE_POOL(kPhaseGradientGemm);
  detail::input_gradients(dx, dW_ih, cache, lda, x, W_ih, rows, I, GH);
  detail::recurrent_weight_gradient(dW_hh, cache, lda, yq, ldq, h0q, T, N, H, 2 * H, reverse);  // r, z blocks
  const bool late_starts = batch_sizes && reverse && h0;  // rows whose h_prev was h0 at a later step
  if (late_starts) detail::recurrent_weight_gradient_late_starts(dW_hh, cache, lda, h0q, batch_sizes, T, N, H, 2 * H);
  if (linear_before_reset) {
    // The n-block's recurrent gradient dk is in the k slot.
    detail::recurrent_weight_gradient(dW_hh + 2 * H * H, cache + GH, lda, yq, ldq, h0q, T, N, H, H, reverse);
    if (late_starts)
      detail::recurrent_weight_gradient_late_starts(dW_hh + 2 * H * H, cache + GH, lda, h0q, batch_sizes, T, N, H, H);
    if (db_ih) {
      detail::add_column_sums(db_ih, static_cast<Real*>(nullptr), colsum, cache, lda, rows, GH);
      detail::add_column_sums(db_hh, static_cast<Real*>(nullptr), colsum, cache, lda, rows, 2 * H);
      detail::add_column_sums(db_hh + 2 * H, static_cast<Real*>(nullptr), colsum, cache + GH, lda, rows, H);
    }
  } else {
    // dW_hn += Σ da_nᵀ (r ⊙ h_prev), with r ⊙ h_prev kept in the k slot.
    gemm(true, false, H, H, rows, Real(1), cache + 2 * H, lda, cache + GH, lda, Real(1), dW_hh + 2 * H * H, H);
    if (db_ih) detail::add_column_sums(db_ih, db_hh, colsum, cache, lda, rows, GH);
  }
}

#define PYLSTM_INSTANTIATE(Real)                                                                                \
  template void gru_forward<Real>(const Dims&, const Weights<Real>&, const Real*, const Real*, Real*, index_t, \
                                  Real*, Real*, Real*, bool, Run, const RecurrentDropout<Real>&,              \
                                  const Zoneout<Real>&);                                                      \
  template void gru_backward<Real>(const Dims&, const Weights<Real>&, const Grads<Real>&, const Recorded<Real>&,  \
                                   const OutputGrads<Real>&, Real*, Real*, Real*, Real*, bool, Run,              \
                                   const RecurrentDropout<Real>&, const Zoneout<Real>&);
PYLSTM_INSTANTIATE(float)
PYLSTM_INSTANTIATE(double)
#undef PYLSTM_INSTANTIATE

}  // namespace pylstm
