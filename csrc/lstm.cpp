// LSTM kernels: fused element-wise gate passes and the BLAS-shaped forward / backward time loops.
#include "lstm.h"

#include <algorithm>
#include <string>
#include <cstdint>
#include <type_traits>

#include "blas.h"
#include "kernels.h"
#include "parallel.h"
#include "profile.h"
#include "sequence.h"

namespace pylstm {

index_t lstm_cache_size(index_t T, index_t N, index_t H, bool layer_norm) {
  if (layer_norm) return detail::lstm_ln_cache_layout<float>(T, N, H);
  // [T][N][G*H] activated gates, then [T][N][H] c_t, then [T][N][H] tanh(c_t).
  return T * N * (kLstmGates * H + 2 * H);
}

namespace {

// An LSTM call's workspace, by slot. Every pass has the first three, so that the element-wise kernels never test for
// nullptr; the running dh and dc of backward live in its dh0 / dc0 outputs, and training's projections in the cache.
template <typename Real>
struct LstmWork {
  Real* bias;     // [G*H] b_ih + b_hh (forward); backward [N][G*H]: the bias-gradient column sums (the first G*H),
                  // or, split by rows, each part's (at most N parts)
  Real* m;        // [N][H] m = o ⊙ tanh(c), the projection's input (forward), or ∂L/∂m (backward)
  Real* scratch;  // [N][H] zeros standing in for an absent c0 or dy; inference's discarded tanh(c)
  Real* c_alt;    // [N][H] inference: the second cell-state buffer; backward, split by rows: zoneout's kept dc
  Real* gates;    // [block][N][G*H] inference: the input projections of one block of steps
  Real* packed;   // the fused loop's packed weights (forward passes; 64-byte aligned at use); backward [G*H][P]:
                  // the fused loops' copy of W_hh by column groups (sequence.h, backward_groups_size)
};

// Inference's block of projections, sized for whichever split the loop takes (the unit split's own-tile blocks, or
// the larger blocks of the row split's OpenBLAS projections; sequence.h).
inline index_t lstm_inference_block_steps(index_t T, index_t N, index_t I, index_t H) {
  return std::max(detail::inference_block_steps(T, N, I), detail::blas_projection_block_steps(T, N, kLstmGates * H));
}

// The one layout of that workspace: its size, and with `base` the slots' pointers in `w`. The packed weights are
// sized for float32 for both element types (the static_assert in kernels.h states why float64 fits).
template <typename Real>
index_t lstm_layout(Pass pass, index_t T, index_t N, index_t I, index_t H, index_t P, Real* base = nullptr,
                    LstmWork<Real>* w = nullptr) {
  const index_t GH = kLstmGates * H, NH = N * H;
  const bool inference = pass == Pass::Inference, forward = pass != Pass::Backward;
  LstmWork<Real> unused{};
  LstmWork<Real>& s = w ? *w : unused;
  Real** const slots[] = {&s.bias, &s.m, &s.scratch, &s.c_alt, &s.gates, &s.packed};
  const index_t sizes[] = {forward ? GH : N * GH, NH, NH, forward && !inference ? 0 : NH,
                           inference ? lstm_inference_block_steps(T, N, I, H) * N * GH : 0,
                           forward ? detail::lstm_fused_packed_size<float>(I, H, P)
                                   : detail::backward_groups_size(N, GH, P)};
  return detail::lay_out(base, slots, sizes);
}

// The layer-norm loop's workspace, by slot: the summed bias (forward), one step's scratch laid out as the cache
// (inference), and in backward zeros for an absent dy, zoneout's kept dh and the parts' sums (at most N parts).
template <typename Real>
struct LstmLnWork {
  Real* bias;     // [G*H]
  Real* packed;   // forward: the packed weights (64-byte aligned at use)
  Real* step;     // inference: detail::lstm_ln_cache_layout(1, N, H)
  Real* xproj;    // inference: [block][N][G*H] the input projections of a block of steps
  Real* hn;       // [N][H] forward: h̃_t
  Real* zeros;    // [N][H] backward
  Real* dkeep;    // [N][H] backward
  Real* partial;  // [N][3·G·H + 2·H] backward
};
template <typename Real>
index_t lstm_ln_layout(Pass pass, index_t T, index_t N, index_t I, index_t H, Real* base = nullptr,
                       LstmLnWork<Real>* w = nullptr) {
  const index_t GH = kLstmGates * H, NH = N * H;
  const bool backward = pass == Pass::Backward;
  LstmLnWork<Real> unused{};
  LstmLnWork<Real>& s = w ? *w : unused;
  const bool inference = pass == Pass::Inference;
  Real** const slots[] = {&s.bias, &s.packed, &s.step, &s.xproj, &s.hn, &s.zeros, &s.dkeep, &s.partial};
  const index_t sizes[] = {GH, backward ? 0 : detail::lstm_fused_packed_size<float>(I, H, H),
                           inference ? detail::lstm_ln_cache_layout<Real>(1, N, H) : 0,
                           inference ? detail::blas_projection_block_steps(T, N, GH) * N * GH : 0,
                           backward ? 0 : NH,
                           backward ? NH : 0, backward ? NH : 0, backward ? N * (3 * GH + 2 * H) : 0};
  return detail::lay_out(base, slots, sizes);
}

}  // namespace

index_t lstm_workspace_size(Pass pass, index_t T, index_t N, index_t I, index_t H, index_t P, bool layer_norm) {
  if (layer_norm) return lstm_ln_layout<float>(pass, T, N, I, H);
  return lstm_layout<float>(pass, T, N, I, H, P);
}

namespace {

// The layer-norm forward and backward (lstm.h): the row-split loops of isa/layer_norm.inc, with the products
// over all steps (x W_ihᵀ in training, the weight gradients) as single GEMMs around them.
template <typename Real>
void lstm_ln_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, const Real* c0, Real* y,
                     index_t ldy, Real* h_n, Real* c_n, Real* cache, Real* work, Run run,
                     const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H, GH = kLstmGates * H;
  if (w.W_hr || w.peep || d.P != H) throw std::invalid_argument("layer norm is not combined with a projection or peepholes");
  if (!w.ln_hh || !w.ln_c || !w.ln_c_bias) throw std::invalid_argument("layer norm needs all four of its parameters");
  if (!rd.mask != !rd.masked) throw std::invalid_argument("recurrent dropout needs both its mask and its buffer");
  if (rd.mask && !cache) throw std::invalid_argument("recurrent dropout is for training calls");
  detail::check_zoneout_masks(zone, cache != nullptr, 2);
  blas_int(T * N, "T*N"), blas_int(GH, "G*H"), blas_int(I, "I");
  if (run.batch_sizes) detail::zero_padding_rows(y, ldy, H, run.batch_sizes, T, N);
  LstmLnWork<Real> ws;
  lstm_ln_layout(cache ? Pass::TrainingForward : Pass::Inference, T, N, I, H, work, &ws);
  for (index_t j = 0; j < GH; ++j) ws.bias[j] = w.b_ih ? w.b_ih[j] + w.b_hh[j] : Real(0);
  detail::copy_or_zero(h_n, h0, N * H);  // the running state
  detail::copy_or_zero(c_n, c0, N * H);
  detail::LstmLnT<Real> F{};
  detail::lstm_ln_cache_layout(cache ? T : 1, N, H, cache ? cache : ws.step, &F.at);
  F.training = cache != nullptr, F.y = y, F.ldy = ldy, F.h = h_n, F.c = c_n, F.hn = ws.hn;
  F.W_hh = w.W_hh, F.packed = detail::align64(ws.packed), F.bias = ws.bias, F.ln_ih = w.ln_ih, F.ln_hh = w.ln_hh, F.ln_c = w.ln_c;
  F.ln_c_bias = w.ln_c_bias, F.batch_sizes = run.batch_sizes, F.rmask = rd.mask, F.zone = zone;
  F.T = T, F.N = N, F.I = I, F.H = H, F.parts = static_cast<int>(std::min<index_t>(get_num_threads(), N));
  F.reverse = run.reverse;
  const auto loop = kernels().of<Real>().lstm_ln_loop;
  const double step_flops = 2.0 * N * GH * H;
  if (cache) {  // the input projections of all steps into the cache, then the whole sequence in one region
    {
      PYLSTM_PHASE_POOL(kPhaseProjection);
      gemm(false, true, T * N, GH, I, Real(1), x, I, w.W_ih, I, Real(0), F.at.xa, GH);
    }
    F.xproj = F.at.xa, F.s0 = 0, F.s1 = T, F.t_base = 0, F.pack = true;
    parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, step_flops);
    return;
  }
  // inference: a block of steps' projections at a time (as the plain loop's), then those steps in a region
  const index_t block = detail::blas_projection_block_steps(T, N, GH);
  for (index_t s = 0; s < T; s += block) {
    {
      PYLSTM_PHASE_POOL(kPhaseProjection);
      F.t_base = detail::project_block(ws.xproj, GH, x, w.W_ih, s, block, T, N, I, GH, run.reverse);
    }
    F.xproj = ws.xproj, F.s0 = s, F.s1 = std::min(T, s + block), F.pack = s == 0;
    parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, step_flops);
  }
}

template <typename Real>
void lstm_ln_backward(const Dims& d, const Weights<Real>& w, const Grads<Real>& g, const Recorded<Real>& fwd,
                      const OutputGrads<Real>& out, Real* dx, Real* dh0, Real* dc0, Real* cache, Real* work, Run run,
                      const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H, GH = kLstmGates * H;
  if (w.W_hr || w.peep || d.P != H) throw std::invalid_argument("layer norm is not combined with a projection or peepholes");
  if (!w.ln_hh || !w.ln_c || !g.dln_ih || !g.dln_hh || !g.dln_c || !g.dln_c_bias)
    throw std::invalid_argument("layer norm's backward needs all four of its parameters and their gradients");
  detail::check_zoneout_masks(zone, true, 2);
  blas_int(T * N, "T*N");
  LstmLnWork<Real> ws;
  lstm_ln_layout(Pass::Backward, T, N, I, H, work, &ws);
  std::fill(ws.zeros, ws.zeros + N * H, Real(0));
  const auto dys = detail::step_rows(out.dy, out.lddy, N, static_cast<const Real*>(ws.zeros));
  detail::copy_or_zero(dh0, out.dh_n, N * H);  // the running gradients end as ∂L/∂h0, ∂L/∂c0
  detail::copy_or_zero(dc0, out.dc_n, N * H);
  const int parts = static_cast<int>(std::min<index_t>(get_num_threads(), N));
  const index_t row = 3 * GH + 2 * H;
  std::fill(ws.partial, ws.partial + parts * row, Real(0));
  detail::LstmLnBackwardT<Real> B{};
  detail::lstm_ln_cache_layout(T, N, H, cache, &B.at);
  B.dh = dh0, B.dc = dc0, B.dkeep = ws.dkeep, B.dy = dys.p, B.lddy = dys.ld, B.dy_step = dys.step, B.W_hh = w.W_hh;
  B.ln_ih = w.ln_ih, B.ln_hh = w.ln_hh, B.ln_c = w.ln_c, B.partial = ws.partial, B.batch_sizes = run.batch_sizes;
  B.rmask = rd.mask, B.zone = zone, B.T = T, B.N = N, B.H = H, B.parts = parts, B.reverse = run.reverse;
  const auto loop = kernels().of<Real>().lstm_ln_loop_backward;
  parallel_steps([&B, loop](int tid, int nt) { loop(B, tid, nt); }, 2.0 * N * GH * H);

  PYLSTM_PHASE_POOL(kPhaseGradientGemm);
  // xa and ha now hold ∂L/∂(x_t W_ihᵀ) and ∂L/∂(product) for every row (zeros past a row's end); hp what each
  // product read.
  detail::input_gradients(dx, g.dW_ih, B.at.xa, GH, fwd.x, w.W_ih, T * N, I, GH);
  gemm(true, false, GH, H, T * N, Real(1), B.at.ha, GH, B.at.hp, H, Real(1), g.dW_hh, H);
  for (int p = 0; p < parts; ++p) {  // the parts' sums, in order
    const Real* s = ws.partial + p * row;
    for (index_t k = 0; k < GH; ++k) {
      g.dln_ih[k] += s[k];
      g.dln_hh[k] += s[GH + k];
      if (g.db_ih) g.db_ih[k] += s[2 * GH + k], g.db_hh[k] += s[2 * GH + k];
    }
    for (index_t j = 0; j < H; ++j) g.dln_c[j] += s[3 * GH + j], g.dln_c_bias[j] += s[3 * GH + H + j];
  }
}

}  // namespace

template <typename Real>
void lstm_pointwise_forward(Real* h, index_t ldh, Real* c, Real* tc, Real* gates, const Real* c_prev,
                            const Real* bias, index_t N, index_t H) {
  kernels().of<Real>().lstm_forward(h, ldh, c, tc, gates, c_prev, bias, N, H);
}

template <typename Real>
void lstm_pointwise_backward(Real* dgates, Real* dc, const Real* dh, const Real* dy, index_t lddy,
                             const Real* c_prev, Real* tc, index_t N, index_t H) {
  kernels().of<Real>().lstm_backward(dgates, dc, dh, dy, lddy, c_prev, tc, N, H);
}

using detail::align64;

index_t lstm_packed_size(index_t I, index_t H) { return detail::lstm_fused_packed_size<float>(I, H, H); }

void lstm_pack(LstmPacked& packed, float* work, const float* W_ih, const float* W_hh, const float* b_ih,
               const float* b_hh, index_t I, index_t H) {
  const index_t GH = kLstmGates * H;
  for (index_t j = 0; j < GH; ++j) work[j] = b_ih ? b_ih[j] + b_hh[j] : 0.f;
  detail::FusedLstmT<float> F{};
  F.packed = align64(packed.data);
  F.W_ih = W_ih, F.W_hh = W_hh, F.bias = work, F.I = I, F.H = H, F.P = H, F.parts = get_num_threads();
  const auto run = kernels().f32.lstm_pack_weights;
  parallel([&F, run](int tid, int nt) { run(F, tid, nt); });
  packed.ready = true;
}

void lstm_stream_step(float* h_new, float* c, float* work, const float* x, const float* h_prev,
                      const float* const* packed, index_t L, index_t N, index_t I0, index_t H, bool descending) {
  const int parts = get_num_threads();
  const auto run = kernels().f32.lstm_loop;
  index_t packed_bytes = 0;  // every layer's weights are read once per step
  for (index_t l = 0; l < L; ++l)
    packed_bytes += detail::lstm_packed_layout(kMaxLanes, l == 0 ? I0 : H, H, H).size * index_t(sizeof(float));
  const bool prefetch = detail::weights_beyond_l2(packed_bytes / parts);
  descending = descending && prefetch;  // only weights that do not stay in L2 gain from the order (lstm.h)
  parallel([&](int tid, int nt) {
    for (index_t l = 0; l < L; ++l) {  // lstm_loop ends each step with a barrier: layer l's h is complete
      float* h = h_new + l * N * H;
      float* cl = c + l * N * H;
      detail::FusedLstmT<float> F{};
      F.y = h, F.ldy = H, F.c_state = cl, F.gates = work, F.packed = align64(const_cast<float*>(packed[l]));
      F.x = l == 0 ? x : h_new + (l - 1) * N * H, F.h0 = F.h0_product = h_prev + l * N * H, F.c0 = cl;
      F.T = 1, F.N = N, F.I = l == 0 ? I0 : H, F.H = H, F.P = H, F.block = 1, F.parts = parts;
      F.prepacked = true, F.prefetch = prefetch, F.descending = descending;
      run(F, tid, nt);
    }
  });
}

namespace {

template <typename Real>
bool rows_split(index_t N, index_t H, bool options_allow) {
  return detail::rows_split(detail::kLstmRowSplit, N, H, index_t(sizeof(Real)), options_allow);
}

}  // namespace

index_t lstm_projection_block_steps(const std::string& split, index_t T, index_t N, index_t I, index_t H) {
  if (split == "rows") return detail::blas_projection_block_steps(T, N, kLstmGates * H);
  if (split == "units") return detail::inference_block_steps(T, N, I);
  throw std::invalid_argument("split must be 'rows' or 'units'");
}

namespace {

template <typename Real>
void lstm_rows_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, const Real* c0, Real* y,
                       index_t ldy, Real* h_n, Real* c_n, Real* cache, const LstmWork<Real>& ws, Run run,
                       LstmPacked* packed_keep, const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H, GH = kLstmGates * H;
  detail::copy_or_zero(h_n, h0, N * H);  // the running state
  detail::copy_or_zero(c_n, c0, N * H);
  detail::LstmRowsT<Real> F{};
  F.packed = detail::align64(ws.packed), F.pack = true;
  if constexpr (std::is_same_v<Real, float>) {
    if (packed_keep) {  // the kept copy: its W_hh part has the layout the row loop reads
      if (!packed_keep->ready) lstm_pack(*packed_keep, ws.bias, w.W_ih, w.W_hh, w.b_ih, w.b_hh, I, H);
      F.packed = detail::align64(packed_keep->data), F.pack = false;
    }
  }
  F.y = y, F.ldy = ldy, F.h = h_n, F.c = c_n, F.W_hh = w.W_hh, F.bias = ws.bias, F.batch_sizes = run.batch_sizes;
  F.rmask = rd.mask, F.rmasked = rd.masked, F.hq = ws.m, F.zone = zone;
  F.T = T, F.N = N, F.H = H, F.parts = static_cast<int>(std::min<index_t>(get_num_threads(), N));
  F.reverse = run.reverse, F.training = cache != nullptr;
  const auto loop = kernels().of<Real>().lstm_rows_loop;
  const double step_flops = 2.0 * N * GH * H;
  if (cache) {
    F.gates = cache, F.cs = cache + T * N * GH, F.tcs = F.cs + T * N * H, F.t_base = 0, F.s0 = 0, F.s1 = T;
    {
      PYLSTM_PHASE_POOL(kPhaseProjection);
      gemm(false, true, T * N, GH, I, Real(1), x, I, w.W_ih, I, Real(0), cache, GH);
    }
    parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, step_flops);
    return;
  }
  F.cs = ws.scratch, F.tcs = ws.c_alt;
  const index_t block = detail::blas_projection_block_steps(T, N, GH);
  for (index_t s = 0; s < T; s += block) {
    {
      PYLSTM_PHASE_POOL(kPhaseProjection);
      F.t_base = detail::project_block(ws.gates, GH, x, w.W_ih, s, block, T, N, I, GH, run.reverse);
    }
    F.gates = ws.gates, F.s0 = s, F.s1 = std::min(T, s + block);
    parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, step_flops);
    F.pack = false;
  }
}

}  // namespace

template <typename Real>
void lstm_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, const Real* c0, Real* y,
                  index_t ldy, Real* h_n, Real* c_n, Real* cache, Real* work, Run run, LstmPacked* packed_keep,
                  const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H, P = d.P, GH = kLstmGates * H;
  const Real *W_ih = w.W_ih, *W_hh = w.W_hh, *b_ih = w.b_ih, *b_hh = w.b_hh, *W_hr = w.W_hr, *peep = w.peep;
  if (w.ln_ih) {
    if (packed_keep) throw std::invalid_argument("packed weights are not kept for a layer-norm LSTM");
    return lstm_ln_forward(d, w, x, h0, c0, y, ldy, h_n, c_n, cache, work, run, rd, zone);
  }
  const bool reverse = run.reverse;
  const index_t* batch_sizes = run.batch_sizes;
  detail::check_run(run);
  if (packed_keep && W_hr) throw std::invalid_argument("packed weights are kept for LSTMs without projection only");
  if (peep && W_hr) throw std::invalid_argument("peepholes and a projection cannot be combined");
  detail::check_recurrent_dropout(rd, cache != nullptr);
  detail::check_zoneout(zone, cache != nullptr, 2, W_hr || peep);
  blas_int(T * N, "T*N");  // the largest BLAS size of the call: refuse it before any work
  if (batch_sizes) detail::zero_padding_rows(y, ldy, P, batch_sizes, T, N);
  const Real* h0_read = detail::mask_initial_state(rd, h0, T, N, P, batch_sizes != nullptr);  // what the products read
  LstmWork<Real> ws;
  lstm_layout(cache ? Pass::TrainingForward : Pass::Inference, T, N, I, H, P, work, &ws);
  Real *bias = ws.bias, *m = ws.m, *scratch = ws.scratch, *c_alt = ws.c_alt;
  Real* gates = cache ? cache : ws.gates;                 // [T][N][GH] training, [block][N][GH] inference
  Real* cs = cache ? cache + T * N * GH : nullptr;       // [T][N][H], training only
  Real* tcs = cache ? cs + T * N * H : nullptr;          // [T][N][H], training only
  for (index_t j = 0; j < GH; ++j) bias[j] = b_ih ? b_ih[j] + b_hh[j] : Real(0);
  if (fused_loops() && rows_split<Real>(N, H, !W_hr && !peep)) {  // split by rows: it sets up its own state
    blas_int(GH, "G*H"), blas_int(I, "I");
    lstm_rows_forward(d, w, x, h0, c0, y, ldy, h_n, c_n, cache, ws, run, packed_keep, rd, zone);
    return;
  }

  // Input projections gates = x W_ihᵀ as (rows × I)·(I × GH) GEMMs: all T steps at once into the training cache;
  // in inference, a block of steps at a time (in processing order) into the workspace.
  const index_t block = cache ? T : detail::inference_block_steps(T, N, I);
  index_t block_t0 = 0;  // time index of the first step held in `gates`
  // Inference: the cell state alternates between c_n and c_alt (the kernel's c and c_prev may not alias; the fused
  // loop updates c_n in place), and
  // scratch takes the unused tanh(c_t).
  // Training: each c_t and tanh(c_t) has its own slot in the cache; scratch is the zero c0 when none is given.
  const Real* c_prev;
  if (cache) {
    if (!c0) std::fill(scratch, scratch + N * H, Real(0));
    c_prev = c0 ? c0 : scratch;
  } else {
    detail::copy_or_zero(c_n, c0, N * H);
    c_prev = c_n;
  }
  if (fused_loops()) {  // the fused loop; the BLAS-per-step loop below is its reference shape
    blas_int(GH, "G*H"), blas_int(I, "I");
    Real* packed = align64(ws.packed);
    bool prepacked = false;
    if constexpr (std::is_same_v<Real, float>) {  // a kept packed copy (float32 only)
      if (packed_keep) {
        packed = align64(packed_keep->data);
        prepacked = packed_keep->ready;
        packed_keep->ready = false;  // until this call has packed into it
      }
    }
    detail::FusedLstmT<Real> F{};
    F.y = y, F.ldy = ldy, F.c_state = c_n, F.gates = gates, F.cs = cs, F.tcs = tcs, F.packed = packed;
    F.x = x, F.h0 = h0, F.c0 = c_prev, F.W_ih = W_ih, F.W_hh = W_hh, F.bias = bias, F.W_hr = W_hr;
    F.rmask = rd.mask, F.rmasked = rd.masked, F.h0_product = h0_read, F.zone = zone;
    F.m = W_hr ? m : nullptr, F.T = T, F.N = N, F.I = I, F.H = H, F.P = P, F.block = block;
    F.parts = get_num_threads(), F.reverse = reverse, F.prepacked = prepacked, F.batch_sizes = batch_sizes;
    F.peep = peep;
    const auto run = kernels().of<Real>().lstm_loop;
    parallel_steps([&F, run](int tid, int nt) { run(F, tid, nt); }, 2.0 * N * GH * (P + I));
    if (packed_keep) packed_keep->ready = true;
    detail::final_rows(h_n, P, y, ldy, batch_sizes, T, N, reverse);  // inference: c_n is final in place
    if (cache) detail::final_rows(c_n, H, cs, H, batch_sizes, T, N, reverse);
    return;
  }

  const Real* h_prev = h0;  // nullptr: zero state, so the first recurrent GEMM is skipped
  index_t ld_prev = P;
  for (index_t s = 0; s < T; ++s) {
    const index_t t = reverse ? T - 1 - s : s;
    if (s % block == 0) block_t0 = detail::project_block(gates, GH, x, W_ih, s, block, T, N, I, GH, reverse);
    Real* g = gates + (t - block_t0) * N * GH;
    if (h_prev) gemm(false, true, N, GH, P, Real(1), h_prev, ld_prev, W_hh, P, Real(1), g, GH);
    Real* yt = y + t * N * ldy;
    Real* c = cache ? cs + t * N * H : (c_prev == c_n ? c_alt : c_n);
    // Without projection h_t = o ⊙ tanh(c_t) goes straight to y; with it, h_t = m W_hrᵀ.
    if (peep)
      kernels().of<Real>().lstm_forward_peep(yt, ldy, c, cache ? tcs + t * N * H : scratch, g, c_prev, bias,
                                                    peep, N, H);
    else
      lstm_pointwise_forward(W_hr ? m : yt, W_hr ? H : ldy, c, cache ? tcs + t * N * H : scratch, g, c_prev, bias,
                             N, H);
    if (W_hr) gemm(false, true, N, P, H, Real(1), m, H, W_hr, H, Real(0), yt, ldy);
    h_prev = yt;
    ld_prev = ldy;
    c_prev = c;
  }
  detail::copy_rows(h_n, h_prev, ld_prev, N, P);
  if (c_prev != c_n) std::copy(c_prev, c_prev + N * H, c_n);
}

template <typename Real>
void lstm_backward(const Dims& d, const Weights<Real>& w, const Grads<Real>& g, const Recorded<Real>& fwd,
                   const OutputGrads<Real>& out, Real* dx, Real* dh0, Real* dc0, Real* cache, Real* work, Run run,
                   const RecurrentDropout<Real>& rd, const Zoneout<Real>& zone) {
  const index_t T = d.T, N = d.N, I = d.I, H = d.H, P = d.P, GH = kLstmGates * H;
  const Real *W_ih = w.W_ih, *W_hh = w.W_hh, *W_hr = w.W_hr, *peep = w.peep;
  Real *dW_ih = g.dW_ih, *dW_hh = g.dW_hh, *db_ih = g.db_ih, *db_hh = g.db_hh, *dW_hr = g.dW_hr, *dpeep = g.dpeep;
  const Real *x = fwd.x, *y = fwd.y, *h0 = fwd.h0, *c0 = fwd.c0;
  const Real *dy = out.dy, *dh_n = out.dh_n, *dc_n = out.dc_n;
  const index_t ldy = fwd.ldy, lddy = out.lddy;
  if (w.ln_ih) return lstm_ln_backward(d, w, g, fwd, out, dx, dh0, dc0, cache, work, run, rd, zone);
  const bool reverse = run.reverse;
  const index_t* batch_sizes = run.batch_sizes;
  detail::check_run(run);
  detail::check_recurrent_dropout(rd, true);
  detail::check_zoneout(zone, true, 2, W_hr || peep);
  if (peep && (W_hr || !dpeep)) throw std::invalid_argument("peepholes need dpeep and no projection");
  blas_int(T * N, "T*N");  // the largest BLAS size of the call: refuse it before any work
  Real* da = cache;                              // [T][N][GH] gates in, pre-activation gradients out
  Real* cs = cache + T * N * GH;                 // [T][N][H] c_t; with projection, step t's slot then takes dh_t
  Real* tcs = cs + T * N * H;                    // [T][N][H] tanh(c_t), then o ⊙ tanh(c_t)
  const index_t t_first = reverse ? T - 1 : 0;   // the step the forward processed first
  LstmWork<Real> ws;
  lstm_layout(Pass::Backward, T, N, I, H, P, work, &ws);
  Real* colsum = ws.bias;                        // [GH]
  Real* dm = ws.m;                               // [N][H] ∂L/∂m, with projection
  Real* zeros = ws.scratch;                      // [N][H], stands in for an absent c0 or dy
  std::fill(zeros, zeros + N * H, Real(0));
  const auto dys = detail::step_rows(dy, lddy, N, static_cast<const Real*>(zeros));

  // The running gradients ∂L/∂h_t and ∂L/∂c_t live in the dh0 / dc0 outputs, which they end as.
  Real* const dh = dh0;
  Real* const dc = dc0;
  detail::copy_or_zero(dh, dh_n, N * P);
  detail::copy_or_zero(dc, dc_n, N * H);

  const bool fused = fused_loops();
  // the fused loops' copy of W_hh by column groups, which they pack (sequence.h, backward_groups_size)
  Real* const W_groups = detail::backward_groups_size(N, GH, P) ? detail::align64(ws.packed) : nullptr;
  if (fused && rows_split<Real>(N, H, !W_hr && !peep)) {
    detail::LstmRowsBackwardT<Real> B{};
    B.da = da, B.tcs = tcs, B.cs = cs, B.c0 = c0 ? c0 : zeros, B.dh = dh, B.dc = dc, B.dy = dys.p;
    B.lddy = dys.ld, B.dy_step = dys.step, B.W_hh = W_hh, B.batch_sizes = batch_sizes;
    B.W_groups = W_groups, B.T = T, B.N = N, B.H = H;
    B.rmask = rd.mask, B.zone = zone, B.dkeep = ws.m, B.dckeep = ws.c_alt, B.zeros = zeros;
    B.parts = static_cast<int>(std::min<index_t>(get_num_threads(), N)), B.reverse = reverse;
    B.colsums = db_ih ? colsum : nullptr;
    if (db_ih) std::fill(colsum, colsum + B.parts * GH, Real(0));
    const auto run = kernels().of<Real>().lstm_rows_loop_backward;
    parallel_steps([&B, run](int tid, int nt) { run(B, tid, nt); }, 2.0 * N * GH * P);
    if (db_ih) {  // the parts' sums, in order
      for (int part = 1; part < B.parts; ++part)
        for (index_t j = 0; j < GH; ++j) colsum[j] += colsum[part * GH + j];
      for (index_t j = 0; j < GH; ++j) db_ih[j] += colsum[j];
      if (db_hh)
        for (index_t j = 0; j < GH; ++j) db_hh[j] += colsum[j];
      db_ih = nullptr;  // (done: not summed again below)
    }
  } else if (fused) {  // the fused loop; the BLAS-per-step loop below is its reference shape
    detail::FusedLstmBackwardT<Real> B{};
    B.da = da, B.dh = dh, B.dc = dc, B.tcs = tcs, B.cs = cs, B.c0 = c0 ? c0 : zeros, B.dy = dys.p;
    B.lddy = dys.ld, B.dy_step = dys.step, B.W_hh = W_hh, B.W_hr = W_hr, B.dm = dm, B.zeros = zeros;
    B.W_groups = W_groups;
    B.T = T, B.N = N, B.H = H, B.P = P, B.parts = get_num_threads(), B.reverse = reverse;
    B.batch_sizes = batch_sizes, B.peep = peep, B.dpeep = dpeep, B.rmask = rd.mask;
    B.zone = zone, B.dkeep = dm;  // (zoneout comes without a projection, whose dm this is)
    const auto run = kernels().of<Real>().lstm_loop_backward;
    parallel_steps([&B, run](int tid, int nt) { run(B, tid, nt); }, 2.0 * N * GH * P);
  }
  for (index_t s = 0; s < T && !fused; ++s) {
    const index_t t = reverse ? s : T - 1 - s;
    const Real* c_prev = t == t_first ? (c0 ? c0 : zeros) : cs + (reverse ? t + 1 : t - 1) * N * H;
    Real* dat = da + t * N * GH;
    Real* tct = tcs + t * N * H;
    if (W_hr) {
      // dh_t = running + dy_t goes to the free c_t slot (kept for dW_hr), then back through the projection.
      Real* dht = cs + t * N * H;
      const Real* dyt = dys.at(t);
      for (index_t n = 0; n < N; ++n)
        for (index_t j = 0; j < P; ++j) dht[n * H + j] = dh[n * P + j] + dyt[n * dys.ld + j];
      gemm(false, false, N, H, P, Real(1), dht, H, W_hr, H, Real(0), dm, H);  // dm = dh_t W_hr
      lstm_pointwise_backward(dat, dc, dm, zeros, 0, c_prev, tct, N, H);
    } else if (peep) {
      kernels().of<Real>().lstm_backward_peep(dat, dc, dh, dys.at(t), dys.ld, c_prev, tct, cs + t * N * H,
                                                     peep, dpeep, N, H);
    } else {
      lstm_pointwise_backward(dat, dc, dh, dys.at(t), dys.ld, c_prev, tct, N, H);
    }
    // dh_{t-1} = da_t W_hh, (N × GH)·(GH × P)
    gemm(false, false, N, P, GH, Real(1), dat, GH, W_hh, P, Real(0), dh, P);
  }

  // The rest are sums over all steps, each one GEMM over the stacked T·N rows; both biases enter a identically.
  PYLSTM_PHASE_POOL(kPhaseGradientGemm);
  detail::input_gradients(dx, dW_ih, da, GH, x, W_ih, T * N, I, GH);
  // With recurrent dropout the products read the masked states the forward recorded.
  const Real* h_seq = rd.mask ? rd.masked : y;
  const Real* h_first = rd.mask && h0 ? rd.masked + T * N * P : h0;
  detail::recurrent_weight_gradient(dW_hh, da, GH, h_seq, rd.mask ? P : ldy, h_first, T, N, P, GH, reverse);
  if (batch_sizes && reverse && h_first)
    detail::recurrent_weight_gradient_late_starts(dW_hh, da, GH, h_first, batch_sizes, T, N, P, GH);
  if (db_ih) detail::add_column_sums(db_ih, db_hh, colsum, da, GH, T * N, GH);
  if (W_hr) gemm(true, false, P, H, T * N, Real(1), cs, H, tcs, H, Real(1), dW_hr, H);  // dW_hr += Σ dh_tᵀ m_t
}

#define PYLSTM_INSTANTIATE(Real)                                                                              \
  template void lstm_pointwise_forward<Real>(Real*, index_t, Real*, Real*, Real*, const Real*, const Real*,    \
                                             index_t, index_t);                                               \
  template void lstm_pointwise_backward<Real>(Real*, Real*, const Real*, const Real*, index_t, const Real*,     \
                                              Real*, index_t, index_t);                                       \
  template void lstm_forward<Real>(const Dims&, const Weights<Real>&, const Real*, const Real*, const Real*, Real*,  \
                                   index_t, Real*, Real*, Real*, Real*, Run, LstmPacked*,                          \
                                   const RecurrentDropout<Real>&, const Zoneout<Real>&);                           \
  template void lstm_backward<Real>(const Dims&, const Weights<Real>&, const Grads<Real>&, const Recorded<Real>&,    \
                                    const OutputGrads<Real>&, Real*, Real*, Real*, Real*, Real*, Run,             \
                                    const RecurrentDropout<Real>&, const Zoneout<Real>&);
PYLSTM_INSTANTIATE(float)
PYLSTM_INSTANTIATE(double)
#undef PYLSTM_INSTANTIATE

}  // namespace pylstm
