// Pieces every cell's time loops share (internal to the core): block sizing and the after-the-loop gradient GEMMs.
#pragma once

#include <algorithm>
#include <stdexcept>

#include "blas.h"
#include "common.h"
#include "kernels.h"  // kOwnProjectionBytes
#include "parallel.h"  // fused_loops

namespace pylstm {
namespace detail {

// Whether a fused loop splits the batch by rows rather than the units (row_split_mode, parallel.h: this rule, or
// forced either way): the LSTM's (isa/row_split.inc), the GRU's with the reset after the product and the RNN's
// (isa/single_fused.inc). The rows win where every thread has enough rows and W_hh is small enough that each thread
// reading all of it per step costs less than the unit split's barrier per step: at least `rows_per_thread` rows for
// each thread and at most `max_whh_bytes` of W_hh, by cell:
//
// - The LSTM: 2 rows, 4 MiB. Measured in one process, the two splits alternating (2-core Zen 5, 2026-12-05, rows /
//   units): AVX-512 training 0.88x (N = 8), 0.93x small (100, 16, 128, 128), 0.93x tall (400, 4, 64, 128),
//   0.92-0.94x medium (100, 32, 256, 256), 0.97-0.98x wide (20, 256, 512, 512: W_hh 4 MiB), inference 0.90x-1.06x;
//   AVX2 training 0.67x-0.88x and inference 0.48x-0.78x on the same cases; but large (50, 64, 1024, 1024; W_hh
//   16 MiB) 1.17x / 1.15x at AVX-512 and 1.04x / 1.02x at AVX2.
// - The GRU: 8 rows, 3 MiB; the RNN: 2 rows, 2 MiB. Measured the same way (2-core Xeon 6/207 with 2 MiB of L2 per
//   core, AVX-512, 2026-12-06, units / rows, > 1: the rows faster; medians of 11-3117 pairs): GRU inference small
//   0.99x, medium 1.06x, tall 0.75x (2 rows a thread), wide 0.97x (W_hh 3 MiB), large 0.81x (12 MiB); training small
//   1.07x, medium 1.06x, wide 1.00x. RNN inference small 1.30x, medium 1.20x, tall 1.05x, wide 0.99x (1 MiB), large
//   0.87x (4 MiB); training small 1.11x, medium 1.08x, wide 1.02x. At AVX2 and SSE2 (the same hour) the cases that
//   take the rows measured 0.98-1.03x (GRU small, medium) and 0.98-1.17x (RNN small, medium, tall, wide). Once the
//   row split projected large inputs by units (single_fused.inc), the GRU at wide (W_hh 3 MiB) measured inference
//   1.006x (AVX-512), 1.020x (AVX2), 1.016x (SSE2), training 0.998x, 1.011x, 1.013x (the same machine, 04:55-05:15):
//   so 3 MiB.
struct RowSplitRule {
  index_t gates, rows_per_thread, max_whh_bytes;
};
constexpr RowSplitRule kLstmRowSplit{4, 2, index_t(4) << 20}, kGruRowSplit{3, 8, index_t(3) << 20},
    kRnnRowSplit{1, 2, index_t(2) << 20};
// For N rows of H units of `real_bytes` each, when the options allow the row split at all.
inline bool rows_split(const RowSplitRule& rule, index_t N, index_t H, index_t real_bytes, bool options_allow) {
  if (!options_allow || N < 2) return false;
  const int mode = row_split_mode();
  if (mode >= 0) return mode == 1;
  return N >= rule.rows_per_thread * index_t(get_num_threads()) &&
         rule.gates * H * H * real_bytes <= rule.max_whh_bytes;
}

// Inference projects the inputs a block of steps at a time, so its scratch is O(N·H) rather than O(T·N·H). Blocks of
// about 256 rows keep the inputs of the fused loops' own-tile projection in L2 (kOwnProjectionBytes, in float32).
// Where even 256 rows are too large for that, the projection goes to OpenBLAS, one call per thread and gate on the
// thread's units, and about 1024 rows serve it better. Against 256 rows, in alternating processes (2-core Zen 5,
// 2026-12-05, medians): AVX-512 LSTM (50, 64, 1024 -> 1024) inference 133.9 -> 129.0 ms, LSTM (20, 256, 512 -> 512)
// 55.6 -> 53.7 ms, GRU 95.4 -> 94.4 and 40.8 -> 39.8 ms, RNN 35.6 -> 34.9 ms; AVX2 the same within 1-2 %.
inline index_t inference_block_steps(index_t T, index_t N, index_t I) {
  const index_t rows = 256 * I * index_t(sizeof(float)) <= kOwnProjectionBytes ? 256 : 1024;
  const index_t steps = (rows + N - 1) / N;
  return steps < T ? steps : T;
}

// The loops split by rows (the LSTM's, plain and layer-norm) project each block with one OpenBLAS product before
// the block's region, and there larger blocks serve better: fewer regions, and OpenBLAS near its full rate. In one
// process, blocks alternating (2-core Zen 5, AVX-512, 2026-12-05, median ms of LSTM inference, 256 rows of the rule
// above -> 2048 -> the whole sequence): (100, 32, 256, 256) 8.59 -> 7.76 -> 7.74, (100, 16, 128, 128) 1.69 -> 1.34
// -> 1.33, (400, 4, 64, 128) 1.75 -> 1.39 -> 1.39, (20, 256, 512, 512) 50.5 -> 48.5 -> 47.8; and against this
// budget (256 rows -> 16 MiB, the same way): AVX2 16.46 -> 15.20, 2.46 -> 2.16, 2.41 -> 2.12, 90.3 -> 88.1; AVX-512
// 9.02 -> 8.14 (8.00 at 8 MiB), 1.66 -> 1.30, 1.89 -> 1.42, 49.9 -> 48.2. The block's projections take at most
// kBlasProjectionBytes (in float32; twice that in float64).
inline constexpr index_t kBlasProjectionBytes = index_t(16) << 20;
inline index_t blas_projection_block_steps(index_t T, index_t N, index_t GH) {
  const index_t rows = std::max<index_t>(256, kBlasProjectionBytes / (GH * index_t(sizeof(float))));
  const index_t steps = std::max<index_t>(1, rows / N);
  return steps < T ? steps : T;
}

// The input projections x W_ihᵀ of the block of `block` steps that starts at processing step s (clipped at T),
// into out [steps][N][ldo] in time order; returns the time index of the block's first row. Training passes
// block = T (all steps into the cache at once), inference a block sized by inference_block_steps.
template <typename Real>
index_t project_block(Real* out, index_t ldo, const Real* x, const Real* W_ih, index_t s, index_t block, index_t T,
                      index_t N, index_t I, index_t GH, bool reverse) {
  const index_t steps = std::min(block, T - s);
  const index_t t0 = reverse ? T - s - steps : s;
  gemm(false, true, steps * N, GH, I, Real(1), x + t0 * N * I, I, W_ih, I, Real(0), out, ldo);
  return t0;
}

// dst [n] = src, or zeros when src is nullptr (an absent initial state or state gradient).
template <typename Real>
void copy_or_zero(Real* dst, const Real* src, index_t n) {
  if (src) std::copy(src, src + n, dst);
  else std::fill(dst, dst + n, Real(0));
}

// An optional gradient sequence [T][N][ld] read step by step; an absent one reads a zero [N][H] block with row
// and step strides 0, so the element-wise kernels never test for nullptr.
template <typename Real>
struct StepRows {
  const Real* p;
  index_t ld, step;
  const Real* at(index_t t) const { return p + t * step; }
};
template <typename Real>
StepRows<Real> step_rows(const Real* seq, index_t ld, index_t N, const Real* zeros) {
  return seq ? StepRows<Real>{seq, ld, N * ld} : StepRows<Real>{zeros, 0, 0};
}

// The input-side gradients, once for all steps from the stacked pre-activation gradients da [rows][lda]
// (its first GH columns): dx [rows][I] += da W_ih (skipped when dx is nullptr), dW_ih [GH][I] += daᵀ x.
template <typename Real>
void input_gradients(Real* dx, Real* dW_ih, const Real* da, index_t lda, const Real* x, const Real* W_ih,
                     index_t rows, index_t I, index_t GH) {
  if (dx) gemm(false, false, rows, I, GH, Real(1), da, lda, W_ih, I, Real(1), dx, I);
  gemm(true, false, GH, I, rows, Real(1), da, lda, x, I, Real(1), dW_ih, I);
}

// Variable lengths, reverse direction: a sorted batch's shorter sequences start at later processed steps, from h0,
// while recurrent_weight_gradient reads their h_prev from y (zeros there). This adds what they missed:
// dW [K][H] += Σ_t da_t[rows starting at t]ᵀ h0[those rows], with batch_sizes [T] the rows running at each step.
template <typename Real>
void recurrent_weight_gradient_late_starts(Real* dW, const Real* da, index_t lda, const Real* h0,
                                           const index_t* batch_sizes, index_t T, index_t N, index_t H, index_t K) {
  for (index_t t = 0; t + 1 < T; ++t) {
    const index_t r0 = batch_sizes[t + 1], r1 = batch_sizes[t];
    if (r1 > r0)
      gemm(true, false, K, H, r1 - r0, Real(1), da + (t * N + r0) * lda, lda, h0 + r0 * H, H, Real(1), dW, H);
  }
}

// dst [N][H] = the final rows of y [T][N][ld]: those of the last step processed, or, with variable lengths run
// forward, each row's at its own last step.
template <typename Real>
void final_rows(Real* dst, index_t H, const Real* y, index_t ld, const index_t* batch_sizes, index_t T, index_t N,
                bool reverse);

// Variable lengths: sets y [T][N][ld]'s first P columns to zero on every row past its sequence's end (the kernels
// write only the running rows, and the backward reads the previous step's rows of y for every row).
template <typename Real>
void zero_padding_rows(Real* y, index_t ld, index_t P, const index_t* batch_sizes, index_t T, index_t N) {
  for (index_t t = 0; t < T; ++t)
    for (index_t n = batch_sizes[t]; n < N; ++n) std::fill(y + (t * N + n) * ld, y + (t * N + n) * ld + P, Real(0));
}

// The final state of each row of a variable-length batch run forward: row n's at its last step, len_n - 1, with
// len_n the steps whose batch_sizes exceed n. dst [N][H] (row stride H), src [T][N][ld].
template <typename Real>
void gather_final_rows(Real* dst, index_t H, const Real* src, index_t ld, const index_t* batch_sizes, index_t T,
                       index_t N) {
  index_t t = T;
  for (index_t n = 0; n < N; ++n) {  // longest first: len_n only falls as n grows
    while (t > 0 && batch_sizes[t - 1] <= n) --t;
    if (t > 0) std::copy(src + ((t - 1) * N + n) * ld, src + ((t - 1) * N + n) * ld + H, dst + n * H);
  }
}

// dW [K][H] (row stride H) += Σ_t da_tᵀ h_prev(t), with da [T][N][lda] (its first K columns) and h_prev(t) the
// output y [T][N][ldy] of the step processed before t, or h0 [N][H] (nothing, when nullptr) for the first one.
template <typename Real>
void recurrent_weight_gradient(Real* dW, const Real* da, index_t lda, const Real* y, index_t ldy, const Real* h0,
                               index_t T, index_t N, index_t H, index_t K, bool reverse) {
  if (T > 1) {
    const Real* da_rec = reverse ? da : da + N * lda;
    const Real* y_prev = reverse ? y + N * ldy : y;
    gemm(true, false, K, H, (T - 1) * N, Real(1), da_rec, lda, y_prev, ldy, Real(1), dW, H);
  }
  const index_t t_first = reverse ? T - 1 : 0;
  if (h0) gemm(true, false, K, H, N, Real(1), da + t_first * N * lda, lda, h0, H, Real(1), dW, H);
}

// Adds the column sums of a [rows][lda] (its first K columns) into db1 and, if not nullptr, db2; sum [K] is scratch.
// The pool's threads take blocks of 64 columns, each column summed over the rows in order: the same result however
// many threads. The plain LSTM's split by rows sums its parts' columns inside its loop instead (isa/row_split.inc).
// Both against the single-threaded pass, in one process (2-core Zen 5, AVX-512, 2026-12-05, training forward +
// backward): LSTM (64, 32, 96, 256) 14.00 -> 13.79 ms, (100, 32, 256, 256) 26.40 -> 25.94, (50, 64, 1024, 1024)
// 389.1 -> 386.9; GRU (100, 32, 256, 256) 24.77 -> 24.55, (50, 64, 1024, 1024) 291.2 -> 286.9.
template <typename Real>
void add_column_sums(Real* db1, Real* db2, Real* sum, const Real* a, index_t lda, index_t rows, index_t K) {
  constexpr index_t kCols = 64;
  const index_t blocks = (K + kCols - 1) / kCols;
  auto columns = [&](index_t j0, index_t j1) {
    Real* __restrict s = sum;
    std::fill(s + j0, s + j1, Real(0));
    for (index_t r = 0; r < rows; ++r) {
      const Real* __restrict row = a + r * lda;
      for (index_t j = j0; j < j1; ++j) s[j] += row[j];
    }
    for (index_t j = j0; j < j1; ++j) db1[j] += s[j];
    if (db2)
      for (index_t j = j0; j < j1; ++j) db2[j] += s[j];
  };
  if (double(rows) * double(K) < kSplitFlops || get_num_threads() == 1 || in_parallel_region()) {
    columns(0, K);
    return;
  }
  const int parts = get_num_threads();
  parallel([&](int tid, int nt) {
    for_parts(blocks, parts, tid, nt, [&](index_t b0, index_t b1) {
      if (b1 > b0) columns(b0 * kCols, std::min(K, b1 * kCols));
    });
  });
}

// Copies the N rows of h [N][ldh] (columns [0, H)) into out [N][H].
template <typename Real>
void copy_rows(Real* out, const Real* h, index_t ldh, index_t N, index_t H) {
  for (index_t n = 0; n < N; ++n) std::copy(h + n * ldh, h + n * ldh + H, out + n * H);
}

template <typename Real>
void final_rows(Real* dst, index_t H, const Real* y, index_t ld, const index_t* batch_sizes, index_t T, index_t N,
                bool reverse) {
  if (batch_sizes && !reverse)
    gather_final_rows(dst, H, y, ld, batch_sizes, T, N);
  else
    copy_rows(dst, y + (reverse ? 0 : T - 1) * N * ld, ld, N, H);
}

// Refuses variable lengths where only the fused loops take them (the BLAS-per-step loops, the reference shape, have
// none): every sequence function checks its Run here first.
inline void check_run(const Run& run) {
  if (run.batch_sizes && !fused_loops())
    throw std::invalid_argument("batch_sizes (variable lengths) needs the fused loops");
}

// Recurrent dropout (common.h) is a training option of the fused loops: refuses it elsewhere, or half given.
template <typename Real>
void check_recurrent_dropout(const RecurrentDropout<Real>& rd, bool training) {
  if (!rd.mask != !rd.masked) throw std::invalid_argument("recurrent dropout needs both its mask and its buffer");
  if (rd.mask && !training) throw std::invalid_argument("recurrent dropout is for training calls");
  if (rd.mask && !fused_loops()) throw std::invalid_argument("recurrent dropout needs the fused loops");
}

// Zoneout (common.h) is an option of the fused loops without a projection or peepholes; a training call takes its
// masks (both of the cell's states: `states` 2 for the LSTM, 1 for the GRU), an inference call their expectation.
// The masks or expectation given agree with a training or inference call (any loop).
template <typename Real>
void check_zoneout_masks(const Zoneout<Real>& z, bool training, int states) {
  if (!z.on()) return;
  const bool masks = z.keep_h && (states == 1 ? !z.keep_c : z.keep_c != nullptr);
  if (training && !masks) throw std::invalid_argument("zoneout in training needs the masks of every state");
  if (!training && (z.keep_c || z.keep_h)) throw std::invalid_argument("zoneout's masks are for training calls");
  if (states == 1 && z.z_c != Real(0)) throw std::invalid_argument("zoneout of c needs a cell state");
}

template <typename Real>
void check_zoneout(const Zoneout<Real>& z, bool training, int states, bool projection_or_peepholes) {
  if (!z.on()) return;
  if (!fused_loops()) throw std::invalid_argument("zoneout needs the fused loops");
  if (projection_or_peepholes) throw std::invalid_argument("zoneout is not combined with a projection or peepholes");
  check_zoneout_masks(z, training, states);
}

// The initial state the recurrent products read: h0 itself, or with recurrent dropout rd.mask ⊙ h0, written into
// rd.masked's slot T (the backward reads it there for dW_hh; zeros for an absent h0). With variable lengths the
// masked sequence starts as zeros, as y does past each row's end. Returns nullptr for an absent h0 (the zero state).
template <typename Real>
const Real* mask_initial_state(const RecurrentDropout<Real>& rd, const Real* h0, index_t T, index_t N, index_t P,
                               bool lengths) {
  if (!rd.mask) return h0;
  if (lengths) std::fill(rd.masked, rd.masked + T * N * P, Real(0));
  Real* first = rd.masked + T * N * P;
  for (index_t j = 0; j < N * P; ++j) first[j] = h0 ? rd.mask[j] * h0[j] : Real(0);
  return h0 ? first : nullptr;
}

// Lays a workspace out as consecutive slots of the given sizes (elements): points each slot into `base` when base is
// given, and returns the total. Each cell's layout function (lstm.cpp, gru.cpp, rnn.cpp) lists its slots once, and
// both its workspace-size function and its sequence functions go through it, so the two cannot disagree.
// The fused backwards' copy of W_hh [K][C] by column groups (isa/tiles.inc, pack_column_groups), in elements with
// the slack for aligning it to 64 bytes: for every backward of two rows or more (a single row reads W in place).
// Read in place, the products' rows of W lie C floats apart, a power of two at the usual sizes, and fall into a few
// of L1's sets. Training against reading in place (2-core Intel Xeon, AVX-512, 2026-12-05, alternating processes):
// GRU (20, 256, 512, 512) 0.96x of the time, RNN the same shape 0.99x, LSTM (50, 64, 1024, 1024) 0.94x.
inline index_t backward_groups_size(index_t N, index_t K, index_t C) { return N >= 2 ? K * C + 16 : 0; }

template <typename Real, size_t K>
index_t lay_out(Real* base, Real** const (&slots)[K], const index_t (&sizes)[K]) {
  index_t offset = 0;
  for (size_t k = 0; k < K; ++k) {
    if (base) *slots[k] = base + offset;
    offset += sizes[k];
  }
  return offset;
}

}  // namespace detail
}  // namespace pylstm
