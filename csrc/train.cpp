// The training step's pieces around the layers (train.h): one pass each, split across pylstm's pool.
#include "train.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "blas.h"
#include "kernels.h"
#include "parallel.h"

namespace pylstm {
namespace {

// A partition of the concatenation of all slots' elements into `parts` even runs; f(slot, begin, end) on each piece
// of part `part`. The parts depend on the thread setting only, so results do too.
template <typename Real, typename F>
void for_slot_pieces(const std::vector<TensorSlot<Real>>& slots, index_t total, int part, int parts, F&& f) {
  const auto [lo, hi] = split_range(total, part, parts);
  index_t start = 0;
  for (size_t s = 0; s < slots.size() && start < hi; start += slots[s].n, ++s) {
    const index_t b = std::max(lo, start), e = std::min(hi, start + slots[s].n);
    if (b < e) f(slots[s], b - start, e - start);
  }
}

template <typename Real>
index_t total_of(const std::vector<TensorSlot<Real>>& slots) {
  index_t t = 0;
  for (const auto& s : slots) t += s.n;
  return t;
}

// Below this many elements a pass runs on the calling thread: a region would cost more than it saves.
constexpr index_t kSplitElements = 1 << 15;

// The parts of a pass over `elements` elements: one below kSplitElements, else one per thread.
inline int parts_for(index_t elements) { return elements < kSplitElements ? 1 : get_num_threads(); }

// f(part) for every part in [0, parts): on the calling thread when there is one, else spread over the pool.
template <typename F>
void on_parts(int parts, F&& f) {
  if (parts == 1) return f(0);
  parallel([&](int tid, int nt) {
    for (int part = tid; part < parts; part += nt) f(part);
  });
}

template <typename Real, typename F>
void run_pieces(const std::vector<TensorSlot<Real>>& slots, F&& f) {
  const index_t total = total_of(slots);
  const int parts = parts_for(total);
  on_parts(parts, [&](int part) { for_slot_pieces(slots, total, part, parts, f); });
}


}  // namespace

template <typename Real>
void copy_split(Real* dst, const Real* src, index_t n) {
  const int parts = parts_for(n);
  on_parts(parts, [&](int part) {
    const auto [b, e] = split_range(n, part, parts);
    std::copy(src + b, src + e, dst + b);
  });
}

template <typename Real>
void linear_forward(Real* y, const Real* x, const Real* W, const Real* b, index_t N, index_t I, index_t O) {
  if (b) {  // the bias rows by the threads whose part of the product adds into them (gemm splits N >= O by rows)
    const int parts = parts_for(N * O);
    on_parts(parts, [&](int part) {
      const auto [r0, r1] = split_range(N, part, parts);
      for (index_t r = r0; r < r1; ++r) std::copy(b, b + O, y + r * O);
    });
  }
  gemm<Real>(false, true, N, O, I, Real(1), x, I, W, I, b ? Real(1) : Real(0), y, O);
}

template <typename Real>
void linear_backward(Real* dx, Real* dW, Real* db, const Real* dy, const Real* x, const Real* W, index_t N,
                     index_t I, index_t O) {
  gemm<Real>(true, false, O, I, N, Real(1), dy, O, x, I, Real(1), dW, I);
  if (db)
    for (index_t n = 0; n < N; ++n)
      for (index_t o = 0; o < O; ++o) db[o] += dy[n * O + o];
  if (dx) gemm<Real>(false, false, N, I, O, Real(1), dy, O, W, I, Real(0), dx, I);
}

template <typename Real>
double softmax_cross_entropy(Real* dlogits, const Real* logits, const std::int64_t* targets, index_t N, index_t C) {
  const int parts = parts_for(N * C);
  std::vector<double> partial(parts, 0.0);  // summed in part order: the loss depends on the thread setting only
  const Real inv_n = Real(1) / static_cast<Real>(N);
  const auto rows_kernel = kernels().of<Real>().softmax_xent_rows;
  on_parts(parts, [&](int part) {
    const auto [r0, r1] = split_range(N, part, parts);
    partial[part] = rows_kernel(dlogits + r0 * C, logits + r0 * C, targets + r0, r1 - r0, C, inv_n);
  });
  double loss = 0;
  for (double p : partial) loss += p;
  return loss / static_cast<double>(N);
}

template <typename Real>
void adam_step(const std::vector<TensorSlot<Real>>& slots, double lr, double b1, double b2, double eps, long step) {
  const detail::AdamCoefficients<Real> c{Real(b1),     Real(b2), Real(1 - b1), Real(1 - b2),
                                         Real(lr / (1 - std::pow(b1, step))), Real(1 - std::pow(b2, step)),
                                         Real(eps)};
  const auto update = kernels().of<Real>().adam;
  run_pieces(slots, [&](const TensorSlot<Real>& s, index_t b, index_t end) {
    update(s.p + b, s.m + b, s.v + b, s.g + b, end - b, c);
  });
}

template <typename Real>
void sgd_step(const std::vector<TensorSlot<Real>>& slots, double lr, double momentum) {
  const Real rl = Real(lr), mu = Real(momentum);
  run_pieces(slots, [&](const TensorSlot<Real>& s, index_t b, index_t end) {
    Real* __restrict p = s.p;
    Real* __restrict m = s.m;
    const Real* __restrict g = s.g;
    if (m) {
      for (index_t k = b; k < end; ++k) {
        m[k] = mu * m[k] + g[k];
        p[k] -= rl * m[k];
      }
    } else {
      for (index_t k = b; k < end; ++k) p[k] -= rl * g[k];
    }
  });
}

template <typename Real>
double grad_norm(const std::vector<TensorSlot<Real>>& slots) {
  const index_t total = total_of(slots);
  const int parts = parts_for(total);
  std::vector<double> partial(parts, 0.0);
  on_parts(parts, [&](int part) {
    double acc = 0;
    for_slot_pieces(slots, total, part, parts, [&](const TensorSlot<Real>& s, index_t b, index_t end) {
      double a[4] = {0, 0, 0, 0};  // four running sums: the loop vectorises without reassociation flags
      index_t k = b;
      for (; k + 4 <= end; k += 4)
        for (int j = 0; j < 4; ++j) a[j] += static_cast<double>(s.g[k + j]) * s.g[k + j];
      for (; k < end; ++k) a[0] += static_cast<double>(s.g[k]) * s.g[k];
      acc += (a[0] + a[1]) + (a[2] + a[3]);
    });
    partial[part] = acc;
  });
  double total_sq = 0;
  for (double p : partial) total_sq += p;
  return std::sqrt(total_sq);
}

template <typename Real>
void scale_grads(const std::vector<TensorSlot<Real>>& slots, Real scale) {
  run_pieces(slots, [&](const TensorSlot<Real>& s, index_t b, index_t end) {
    for (index_t k = b; k < end; ++k) s.g[k] *= scale;
  });
}

template <typename Real>
void bernoulli_fill(Real* out, index_t n, std::uint64_t seed, double p, Real below, Real above) {
  const double scaled = p * 4294967296.0;
  const auto fill = kernels().of<Real>().bernoulli;
  if (p >= 1) {  // every value is below: the 32-bit threshold cannot say so
    std::fill(out, out + n, below);
    return;
  }
  const std::uint32_t threshold = static_cast<std::uint32_t>(scaled);
  const int parts = parts_for(n);
  on_parts(parts, [&](int part) {
    const auto [b, e] = split_range(n, part, parts);
    fill(out + b, b, e, seed, threshold, below, above);
  });
}

#define PYLSTM_TRAIN(Real)                                                                                        \
  template void copy_split<Real>(Real*, const Real*, index_t);                                                    \
  template void linear_forward<Real>(Real*, const Real*, const Real*, const Real*, index_t, index_t, index_t);    \
  template void linear_backward<Real>(Real*, Real*, Real*, const Real*, const Real*, const Real*, index_t,        \
                                      index_t, index_t);                                                          \
  template double softmax_cross_entropy<Real>(Real*, const Real*, const std::int64_t*, index_t, index_t);         \
  template void adam_step<Real>(const std::vector<TensorSlot<Real>>&, double, double, double, double, long);      \
  template void sgd_step<Real>(const std::vector<TensorSlot<Real>>&, double, double);                             \
  template double grad_norm<Real>(const std::vector<TensorSlot<Real>>&);                                          \
  template void scale_grads<Real>(const std::vector<TensorSlot<Real>>&, Real);                                     \
  template void bernoulli_fill<Real>(Real*, index_t, std::uint64_t, double, Real, Real);
PYLSTM_TRAIN(float)
PYLSTM_TRAIN(double)
#undef PYLSTM_TRAIN

}  // namespace pylstm
