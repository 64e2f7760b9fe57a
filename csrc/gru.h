// GRU: the fused element-wise kernels and the forward / backward-through-time loops over one layer and direction.
//
// Gate order r, z, n (G = 3), as PyTorch. Two forms:
//   linear_before_reset (PyTorch, cuDNN; the default):
//     r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)     z = σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
//     n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))
//   original (Keras reset_after=False, ONNX linear_before_reset=0):
//     n = tanh(x W_inᵀ + b_in + (r ⊙ h) W_hnᵀ + b_hn)   — the n-block of the recurrent product needs r first
//   h' = (1 − z) ⊙ n + z ⊙ h
//
// Both forms run fused loops on pylstm's pool (kernels.inc; as lstm.h says for the LSTM), the original form in two
// phases per step; the BLAS-per-step loops below them are their reference shape.
//
// A training forward keeps per step [r, z, n, k] with k = h W_hnᵀ + b_hn (linear before reset) or k = r ⊙ h
// (original): T·N·4H values. Backward overwrites r, z, n with the gradients of their pre-activations and, in the
// linear-before-reset form, k with the gradient of the recurrent n-block (da_n ⊙ r).
#pragma once

#include "common.h"

namespace pylstm {

constexpr index_t kGruGates = 3;

index_t gru_cache_size(index_t T, index_t N, index_t H);
index_t gru_workspace_size(Pass pass, index_t T, index_t N, index_t I, index_t H);

// As lstm_forward, for the GRU (one state, gate order r, z, n).
//   y [T][N][ldy] out;  h_n [N][H] out;  cache [gru_cache_size] out, training only, else nullptr
//   work [gru_workspace_size(...)];  x [T][N][I];  h0 [N][H] or nullptr
//   W_ih [3H][I], W_hh [3H][H];  b_ih, b_hh [3H] or nullptr (both or neither)
//   batch_sizes: variable lengths, as lstm_forward takes them
template <typename Real>
void gru_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, Real* y, index_t ldy,
                 Real* h_n, Real* cache, Real* work, bool linear_before_reset, Run run,
                 const RecurrentDropout<Real>& rd = {}, const Zoneout<Real>& zone = {});

// As lstm_backward, for the GRU: dx accumulated, dh0 overwritten, dW_* and db_* accumulated, cache consumed;
// dy and dh_n may be nullptr (zeros). b_hh is needed by neither form's backward, so it is not an argument.
template <typename Real>
void gru_backward(const Dims& d, const Weights<Real>& w, const Grads<Real>& g, const Recorded<Real>& fwd,
                  const OutputGrads<Real>& out, Real* dx, Real* dh0, Real* cache, Real* work, bool linear_before_reset,
                  Run run, const RecurrentDropout<Real>& rd = {}, const Zoneout<Real>& zone = {});

}  // namespace pylstm
