// The pieces of a training step around the recurrent layers, run on pylstm's pool and BLAS so that a user's loop
// never wakes another library's threads: a Linear layer, softmax cross-entropy fused with its gradient, and the
// optimizers (Adam, SGD with momentum) and gradient clipping as single passes over all of a model's tensors.
// pylstm/reference.py holds the same maths in NumPy (linear_forward, softmax_cross_entropy, adam_step, ...).
#pragma once

#include <vector>

#include "common.h"

namespace pylstm {

// y [N][O] = x [N][I] W [O][I]ᵀ + b [O] (b may be nullptr). Overwrites y.
template <typename Real>
void linear_forward(Real* y, const Real* x, const Real* W, const Real* b, index_t N, index_t I, index_t O);

// dW [O][I] += dyᵀ x;  db [O] += Σ_rows dy (nullptr: none);  dx [N][I] = dy W (nullptr: not computed).
template <typename Real>
void linear_backward(Real* dx, Real* dW, Real* db, const Real* dy, const Real* x, const Real* W, index_t N,
                     index_t I, index_t O);

// dst [n] = src [n], split across the pool in contiguous parts, as gemm splits a product's rows: the thread that
// copies a part has it in its own cache when the product that reads the copy next takes the same part. (The layers'
// private copies of a training call's input and output; the main thread's copy of a 2 MB output left the head
// product's other thread reading its half from the other core.)
template <typename Real>
void copy_split(Real* dst, const Real* src, index_t n);

// Mean cross-entropy of softmax(logits) over N rows of C classes against targets in [0, C) (the caller checks).
// Returns the loss (accumulated in double); dlogits [N][C] = (softmax − onehot) / N, overwritten (may be logits).
template <typename Real>
double softmax_cross_entropy(Real* dlogits, const Real* logits, const std::int64_t* targets, index_t N, index_t C);

// One tensor of a model for the optimizers: parameter, gradient and up to two state buffers, `n` elements each.
template <typename Real>
struct TensorSlot {
  Real* p;
  Real* g;
  Real* m;  // Adam's first moment, SGD's momentum buffer (nullptr without momentum)
  Real* v;  // Adam's second moment
  index_t n;
};

// Adam with bias correction (torch.optim.Adam, weight_decay = 0), `step` counted from 1:
//   m = b1 m + (1 − b1) g;  v = b2 v + (1 − b2) g²;  p −= (lr / (1 − b1^step)) m / (√(v / (1 − b2^step)) + eps)
template <typename Real>
void adam_step(const std::vector<TensorSlot<Real>>& slots, double lr, double b1, double b2, double eps, long step);

// SGD: with momentum, m = momentum m + g and p −= lr m; without (m == nullptr), p −= lr g.
template <typename Real>
void sgd_step(const std::vector<TensorSlot<Real>>& slots, double lr, double momentum);

// √(Σ g²) over every slot's gradient, in double, summed in an order fixed by the thread setting.
template <typename Real>
double grad_norm(const std::vector<TensorSlot<Real>>& slots);

// g *= scale over every slot's gradient.
template <typename Real>
void scale_grads(const std::vector<TensorSlot<Real>>& slots, Real scale);

// The regularizers' masks: out[i] = below with probability p (exactly: where a 32-bit value keyed by `seed` and i,
// detail::bernoulli_u32, is under ⌊p · 2^32⌋), else above, for i in [0, n). Value i depends on (seed, i) alone,
// so the result is the same on any number of threads. p in [0, 1].
template <typename Real>
void bernoulli_fill(Real* out, index_t n, std::uint64_t seed, double p, Real below, Real above);

}  // namespace pylstm
