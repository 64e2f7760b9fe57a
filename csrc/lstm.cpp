// LSTM kernels: fused element-wise gate passes and the BLAS-shaped forward / backward time loops.
#include "lstm.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "activations.h"
#include "blas.h"
#include "parallel.h"
#include "sequence.h"

namespace pylstm {

namespace {
// The fused float32 forward works on blocks of 16 hidden units: one 512-bit vector of each gate.
constexpr index_t kLanes = 16;
inline index_t unit_blocks(index_t H) { return (H + kLanes - 1) / kLanes; }
// Packed W_hh [blocks][P][G][16] and bias [blocks][G][16], plus slack to align the start to 64 bytes.
inline index_t packed_size(index_t H) { return unit_blocks(H) * kLanes * kLstmGates * (H + 1) + kLanes; }
}  // namespace

index_t lstm_cache_size(index_t T, index_t N, index_t H) {
  // [T][N][G*H] activated gates, then [T][N][H] c_t, then [T][N][H] tanh(c_t).
  return T * N * (kLstmGates * H + 2 * H);
}

index_t lstm_workspace_size(Pass pass, index_t T, index_t N, index_t /*I*/, index_t H) {
  // Every pass starts with [G*H] (the summed bias, or the bias-gradient column sums) and an [N][H] block
  // (zeros standing in for an absent c0 / dy, or the discarded tanh(c) of inference), so that the element-wise
  // kernels never test for nullptr.
  const index_t GH = kLstmGates * H;
  const index_t common = GH + 2 * N * H;  // plus [N][H] for the projection's input m or its gradient
  switch (pass) {
    case Pass::Inference:  // plus a second cell-state buffer, the input projections of one block of steps and
                           // the fused float32 loop's packed weights
      return common + N * H + detail::inference_block_steps(T, N) * N * GH + packed_size(H);
    case Pass::TrainingForward:  // the projections live in the cache
      return common + packed_size(H);
    case Pass::Backward:  // the running dh and dc live in the dh0 / dc0 outputs
      return common;
  }
  return common;
}

namespace {

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

}  // namespace

template <typename Real>
PYLSTM_VECTOR_CLONES void lstm_pointwise_forward(Real* h, index_t ldh, Real* c, Real* tc, Real* gates, const Real* c_prev,
                            const Real* bias, index_t N, index_t H) {
  const index_t GH = kLstmGates * H;
  for (index_t n = 0; n < N; ++n) {
    Real* a = gates + n * GH;
    lstm_row_forward(h + n * ldh, c + n * H, tc + n * H, a, a + H, a + 2 * H, a + 3 * H, c_prev + n * H, bias,
                     bias + H, bias + 2 * H, bias + 3 * H, H);
  }
}

template <typename Real>
PYLSTM_VECTOR_CLONES void lstm_pointwise_backward(Real* dgates, Real* dc, const Real* dh, const Real* dy, index_t lddy,
                             const Real* c_prev, Real* tc, index_t N, index_t H) {
  const index_t GH = kLstmGates * H;
  for (index_t n = 0; n < N; ++n) {
    Real* a = dgates + n * GH;
    lstm_row_backward(a, a + H, a + 2 * H, a + 3 * H, dc + n * H, dh + n * H, dy + n * lddy, c_prev + n * H,
                      tc + n * H, H);
  }
}

namespace detail {

// ---- the fused float32 forward: one parallel region for the whole sequence ----
//
// Each thread owns whole blocks of 16 hidden units with all four of their gates, so a step's recurrent product and
// its element-wise pass need nothing from the other threads; the threads meet once per step, at the barrier that
// makes h_t complete before anyone reads it. Each thread packs its share of W_hh once per call into its own cache
// as [block][k][gate][16], so the product is a stream of broadcast-and-FMA over contiguous vectors (no horizontal
// sums, no repacking per step), and it projects the inputs of its own gate columns itself.
// Work is split into get_num_threads() parts of unit blocks; when the pool is busy a single thread runs all parts,
// in the same order per element, so results never depend on which threads ran.

typedef float vec16 __attribute__((vector_size(64)));
typedef float vec16u __attribute__((vector_size(64), aligned(4)));

struct FusedLstm {
  float* y;  index_t ldy;
  float* c_state;     // inference: c_n, updated in place
  float* gates;       // [rows][GH]: the cache (training) or one block of input projections (inference)
  float* cs;          // training: [T][N][H] c_t;  nullptr in inference
  float* tcs;         // training: [T][N][H] tanh(c_t)
  float* packed;      // [blocks][H][G][16], 64-byte aligned
  float* packed_bias; // [blocks][G][16]
  const float* x; const float* h0;
  const float* c0;    // c_{-1}: c0 or zeros (training), c_n (inference)
  const float* W_ih; const float* W_hh; const float* bias;
  index_t T, N, I, H, block;
  int parts;
  bool reverse;
};

// Rows n0 … n0+R-1 of unit block b at step t: the recurrent product, then the gates and the state.
template <int R>
__attribute__((always_inline)) inline void fused_rows(const FusedLstm& F, index_t b, index_t n0, const float* g,
                                                      const float* h_prev, index_t ld_prev, const float* c_prev,
                                                      float* c, float* h, float* tc) {
  const index_t H = F.H, GH = kLstmGates * H, u0 = b * kLanes;
  const index_t valid = std::min(kLanes, H - u0);
  vec16 acc[R][kLstmGates];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < kLstmGates; ++q) {
      const float* src = g + (n0 + r) * GH + q * H + u0;
      if (valid == kLanes) {
        acc[r][q] = *reinterpret_cast<const vec16u*>(src);
      } else {
        alignas(64) float tmp[kLanes] = {};
        for (index_t j = 0; j < valid; ++j) tmp[j] = src[j];
        acc[r][q] = *reinterpret_cast<const vec16*>(tmp);
      }
    }
  if (h_prev) {
    const float* w = F.packed + b * H * kLstmGates * kLanes;
    const float* hp[R];
    for (int r = 0; r < R; ++r) hp[r] = h_prev + (n0 + r) * ld_prev;
    index_t k = 0;
    if (R == 1) {  // a matrix-vector product: a second set of sums halves the FMA dependency chains
      vec16 e0 = {}, e1 = {}, e2 = {}, e3 = {};
      for (; k + 2 <= H; k += 2, w += 2 * kLstmGates * kLanes) {
        const float a0 = hp[0][k], a1 = hp[0][k + 1];
        const vec16* v = reinterpret_cast<const vec16*>(w);
        acc[0][0] += a0 * v[0]; acc[0][1] += a0 * v[1]; acc[0][2] += a0 * v[2]; acc[0][3] += a0 * v[3];
        e0 += a1 * v[4]; e1 += a1 * v[5]; e2 += a1 * v[6]; e3 += a1 * v[7];
      }
      acc[0][0] += e0; acc[0][1] += e1; acc[0][2] += e2; acc[0][3] += e3;
    }
    for (; k < H; ++k, w += kLstmGates * kLanes) {
      const vec16* v = reinterpret_cast<const vec16*>(w);
      const vec16 w0 = v[0], w1 = v[1], w2 = v[2], w3 = v[3];
      for (int r = 0; r < R; ++r) {
        const float a = hp[r][k];
        acc[r][0] += a * w0; acc[r][1] += a * w1; acc[r][2] += a * w2; acc[r][3] += a * w3;
      }
    }
  }
  const float* bias = F.packed_bias + b * kLstmGates * kLanes;
  for (int r = 0; r < R; ++r) {
    const index_t n = n0 + r;
    alignas(64) float a[kLstmGates][kLanes];
    alignas(64) float cp[kLanes] = {}, hn[kLanes], cn[kLanes], tn[kLanes];
    for (int q = 0; q < kLstmGates; ++q) *reinterpret_cast<vec16*>(a[q]) = acc[r][q];
    for (index_t j = 0; j < valid; ++j) cp[j] = c_prev[n * H + u0 + j];
    lstm_row_forward(hn, cn, tn, a[0], a[1], a[2], a[3], cp, bias, bias + kLanes, bias + 2 * kLanes,
                     bias + 3 * kLanes, kLanes);
    std::copy(hn, hn + valid, h + n * F.ldy + u0);
    std::copy(cn, cn + valid, c + n * H + u0);
    if (tc) {  // training: the activated gates and tanh(c_t) for backward
      std::copy(tn, tn + valid, tc + n * H + u0);
      float* gt = const_cast<float*>(g) + n * GH + u0;
      for (int q = 0; q < kLstmGates; ++q) std::copy(a[q], a[q] + valid, gt + q * H);
    }
  }
}

// The part loops are written out rather than passed to for_parts(): a lambda body is a function of its own, compiled
// for the baseline ISA rather than this clone's, and the kernel inlined into it ran 10× slower (measured).
PYLSTM_VECTOR_CLONES void lstm_fused_thread(const FusedLstm& F, int tid, int nt) {
  const index_t T = F.T, N = F.N, I = F.I, H = F.H, GH = kLstmGates * H, nb = unit_blocks(H);
  // Pack this thread's blocks of W_hh and of the bias (zeros beyond H).
  for (int part = tid; part < F.parts; part += nt) {
    const auto [b0, b1] = split_range(nb, part, F.parts);
    for (index_t b = b0; b < b1; ++b) {
      float* wb = F.packed + b * H * kLstmGates * kLanes;
      float* bb = F.packed_bias + b * kLstmGates * kLanes;
      const index_t valid = std::min(kLanes, H - b * kLanes);
      for (int q = 0; q < kLstmGates; ++q)
        for (index_t j = 0; j < kLanes; ++j) bb[q * kLanes + j] = j < valid ? F.bias[q * H + b * kLanes + j] : 0.f;
      // 16×16 tiles: each tile reads 16 rows of 64 bytes and writes 16 whole 64-byte vectors.
      for (index_t k0 = 0; k0 < H; k0 += kLanes) {
        const index_t kn = std::min(kLanes, H - k0);
        for (int q = 0; q < kLstmGates; ++q) {
          alignas(64) float tile[kLanes][kLanes] = {};
          for (index_t j = 0; j < valid; ++j) {
            const float* row = F.W_hh + (q * H + b * kLanes + j) * H + k0;
            for (index_t k = 0; k < kn; ++k) tile[k][j] = row[k];
          }
          for (index_t k = 0; k < kn; ++k)
            std::copy(tile[k], tile[k] + kLanes, wb + ((k0 + k) * kLstmGates + q) * kLanes);
        }
      }
    }
  }
  index_t block_t0 = 0;
  const float* h_prev = F.h0;
  index_t ld_prev = H;
  const float* c_prev = F.c0;
  for (index_t s = 0; s < T; ++s) {
    const index_t t = F.reverse ? T - 1 - s : s;
    if (s % F.block == 0) {  // project this thread's gate columns for the next block of steps
      const index_t steps = std::min(F.block, T - s);
      block_t0 = F.reverse ? T - s - steps : s;
      for (int part = tid; part < F.parts; part += nt) {
        const auto [b0, b1] = split_range(nb, part, F.parts);
        const index_t u0 = b0 * kLanes, u1 = std::min(H, b1 * kLanes);
        for (int q = 0; q < kLstmGates && u1 > u0; ++q)
          gemm1(false, true, steps * N, u1 - u0, I, 1.f, F.x + block_t0 * N * I, I, F.W_ih + (q * H + u0) * I, I, 0.f,
                F.gates + q * H + u0, GH);
      }
    }
    const float* g = F.gates + (t - block_t0) * N * GH;
    float* h = F.y + t * N * F.ldy;
    float* c = F.cs ? F.cs + t * N * H : F.c_state;
    float* tc = F.cs ? F.tcs + t * N * H : nullptr;
    for (int part = tid; part < F.parts; part += nt) {
      const auto [b0, b1] = split_range(nb, part, F.parts);
      for (index_t b = b0; b < b1; ++b) {
        index_t n = 0;
        for (; n + 4 <= N; n += 4) fused_rows<4>(F, b, n, g, h_prev, ld_prev, c_prev, c, h, tc);
        switch (N - n) {
          case 3: fused_rows<3>(F, b, n, g, h_prev, ld_prev, c_prev, c, h, tc); break;
          case 2: fused_rows<2>(F, b, n, g, h_prev, ld_prev, c_prev, c, h, tc); break;
          case 1: fused_rows<1>(F, b, n, g, h_prev, ld_prev, c_prev, c, h, tc); break;
          default: break;
        }
      }
    }
    parallel_barrier();  // h_t complete before any thread reads it
    h_prev = h;
    ld_prev = F.ldy;
    c_prev = c;
  }
}

}  // namespace detail

template <typename Real>
void lstm_forward(Real* y, index_t ldy, Real* h_n, Real* c_n, Real* cache, Real* work, const Real* x,
                  const Real* h0, const Real* c0, const Real* W_ih, const Real* W_hh, const Real* b_ih,
                  const Real* b_hh, const Real* W_hr, index_t T, index_t N, index_t I, index_t H, index_t P,
                  bool reverse) {
  const index_t GH = kLstmGates * H;
  blas_int(T * N, "T*N");  // the largest BLAS size of the call: refuse it before any work
  Real* bias = work;                                     // [GH]
  Real* m = bias + GH;                                   // [N][H] o ⊙ tanh(c), the projection's input
  Real* scratch = m + N * H;                             // [N][H]
  Real* c_alt = scratch + N * H;                         // [N][H], inference only
  Real* gates = cache ? cache : c_alt + N * H;           // [T][N][GH] training, [block][N][GH] inference
  Real* cs = cache ? cache + T * N * GH : nullptr;       // [T][N][H], training only
  Real* tcs = cache ? cs + T * N * H : nullptr;          // [T][N][H], training only
  for (index_t j = 0; j < GH; ++j) bias[j] = b_ih ? b_ih[j] + b_hh[j] : Real(0);

  // Input projections gates = x W_ihᵀ as (rows × I)·(I × GH) GEMMs: all T steps at once into the training cache;
  // in inference, a block of steps at a time (in processing order) into the workspace.
  const index_t block = cache ? T : detail::inference_block_steps(T, N);
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
  if constexpr (std::is_same_v<Real, float>) {
    if (!W_hr) {  // the fused loop (float32, no projection); the BLAS-per-step loop below is its reference shape
      blas_int(GH, "G*H"), blas_int(I, "I");
      auto align64 = [](float* p) {
        return reinterpret_cast<float*>((reinterpret_cast<std::uintptr_t>(p) + 63) & ~std::uintptr_t(63));
      };
      float* packed = align64((cache ? scratch + N * H : gates + block * N * GH));
      detail::FusedLstm F{y,     ldy,   c_n,  gates, cs, tcs, packed, packed + unit_blocks(H) * H * kLstmGates * kLanes,
                          x,     h0,    c_prev, W_ih, W_hh, bias,
                          T,     N,     I,    H,     block, get_num_threads(), reverse};
      parallel([&F](int tid, int nt) { detail::lstm_fused_thread(F, tid, nt); });
      const index_t t_last = reverse ? 0 : T - 1;
      detail::copy_rows(h_n, y + t_last * N * ldy, ldy, N, H);
      if (cache) std::copy(cs + t_last * N * H, cs + (t_last + 1) * N * H, c_n);
      return;
    }
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
    lstm_pointwise_forward(W_hr ? m : yt, W_hr ? H : ldy, c, cache ? tcs + t * N * H : scratch, g, c_prev, bias, N,
                           H);
    if (W_hr) gemm(false, true, N, P, H, Real(1), m, H, W_hr, H, Real(0), yt, ldy);
    h_prev = yt;
    ld_prev = ldy;
    c_prev = c;
  }
  detail::copy_rows(h_n, h_prev, ld_prev, N, P);
  if (c_prev != c_n) std::copy(c_prev, c_prev + N * H, c_n);
}

template <typename Real>
void lstm_backward(Real* dx, Real* dh0, Real* dc0, Real* dW_ih, Real* dW_hh, Real* db_ih, Real* db_hh, Real* dW_hr,
                   Real* cache, Real* work, const Real* dy, index_t lddy, const Real* dh_n, const Real* dc_n,
                   const Real* x, const Real* y, index_t ldy, const Real* h0, const Real* c0, const Real* W_ih,
                   const Real* W_hh, const Real* W_hr, index_t T, index_t N, index_t I, index_t H, index_t P,
                   bool reverse) {
  const index_t GH = kLstmGates * H;
  blas_int(T * N, "T*N");  // the largest BLAS size of the call: refuse it before any work
  Real* da = cache;                              // [T][N][GH] gates in, pre-activation gradients out
  Real* cs = cache + T * N * GH;                 // [T][N][H] c_t; with projection, step t's slot then takes dh_t
  Real* tcs = cs + T * N * H;                    // [T][N][H] tanh(c_t), then o ⊙ tanh(c_t)
  const index_t t_first = reverse ? T - 1 : 0;   // the step the forward processed first
  Real* colsum = work;                           // [GH]
  Real* dm = colsum + GH;                        // [N][H] ∂L/∂m, with projection
  Real* zeros = dm + N * H;                      // [N][H], stands in for an absent c0 or dy
  std::fill(zeros, zeros + N * H, Real(0));
  const auto dys = detail::step_rows(dy, lddy, N, static_cast<const Real*>(zeros));

  // dh0 / dc0 carry the running gradients w.r.t. (h_t, c_t) and end as those w.r.t. (h0, c0).
  detail::copy_or_zero(dh0, dh_n, N * P);
  detail::copy_or_zero(dc0, dc_n, N * H);

  for (index_t s = 0; s < T; ++s) {
    const index_t t = reverse ? s : T - 1 - s;
    const Real* c_prev = t == t_first ? (c0 ? c0 : zeros) : cs + (reverse ? t + 1 : t - 1) * N * H;
    Real* dat = da + t * N * GH;
    Real* tct = tcs + t * N * H;
    if (W_hr) {
      // dh_t = running + dy_t goes to the free c_t slot (kept for dW_hr), then back through the projection.
      Real* dht = cs + t * N * H;
      const Real* dyt = dys.at(t);
      for (index_t n = 0; n < N; ++n)
        for (index_t j = 0; j < P; ++j) dht[n * H + j] = dh0[n * P + j] + dyt[n * dys.ld + j];
      gemm(false, false, N, H, P, Real(1), dht, H, W_hr, H, Real(0), dm, H);  // dm = dh_t W_hr
      lstm_pointwise_backward(dat, dc0, dm, zeros, 0, c_prev, tct, N, H);
    } else {
      lstm_pointwise_backward(dat, dc0, dh0, dys.at(t), dys.ld, c_prev, tct, N, H);
    }
    // dh_{t-1} = da_t W_hh, (N × GH)·(GH × P)
    gemm(false, false, N, P, GH, Real(1), dat, GH, W_hh, P, Real(0), dh0, P);
  }

  // The rest are sums over all steps, each one GEMM over the stacked T·N rows; both biases enter a identically.
  detail::input_gradients(dx, dW_ih, da, GH, x, W_ih, T * N, I, GH);
  detail::recurrent_weight_gradient(dW_hh, da, GH, y, ldy, h0, T, N, P, GH, reverse);
  if (db_ih) detail::add_column_sums(db_ih, db_hh, colsum, da, GH, T * N, GH);
  if (W_hr) gemm(true, false, P, H, T * N, Real(1), cs, H, tcs, H, Real(1), dW_hr, H);  // dW_hr += Σ dh_tᵀ m_t
}

#define PYLSTM_INSTANTIATE(Real)                                                                              \
  template void lstm_pointwise_forward<Real>(Real*, index_t, Real*, Real*, Real*, const Real*, const Real*,    \
                                             index_t, index_t);                                               \
  template void lstm_pointwise_backward<Real>(Real*, Real*, const Real*, const Real*, index_t, const Real*,     \
                                              Real*, index_t, index_t);                                       \
  template void lstm_forward<Real>(Real*, index_t, Real*, Real*, Real*, Real*, const Real*, const Real*,       \
                                   const Real*, const Real*, const Real*, const Real*, const Real*,           \
                                   const Real*, index_t, index_t, index_t, index_t, index_t, bool);           \
  template void lstm_backward<Real>(Real*, Real*, Real*, Real*, Real*, Real*, Real*, Real*, Real*, Real*,      \
                                    const Real*, index_t, const Real*, const Real*, const Real*, const Real*,  \
                                    index_t, const Real*, const Real*, const Real*, const Real*, const Real*, \
                                    index_t, index_t, index_t, index_t, index_t, bool);
PYLSTM_INSTANTIATE(float)
PYLSTM_INSTANTIATE(double)
#undef PYLSTM_INSTANTIATE

}  // namespace pylstm
