// Vanilla RNN (Elman): the fused element-wise kernels and the forward / backward-through-time loops over one layer
// and one direction.
//
//   h_t = φ(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh),  φ = tanh, relu or sigmoid   (G = 1)
//
// Same shape as lstm.h: one input-projection GEMM, then per step one recurrent GEMM and one element-wise pass; the
// forward and backward run fused on pylstm's pool as the LSTM's do (isa/single_fused.inc). Sigmoid is not in torch;
// it is there to show why the hidden state uses tanh (pylstm activations), and ONNX's RNN takes it.
// φ' is taken from the output (1 - h² for tanh, [h > 0] for relu, h (1 - h) for sigmoid), so a training forward keeps only the T·N·H
// pre-activations' slots, which backward overwrites with their gradients.
#pragma once

#include "common.h"

namespace pylstm {

enum class Nonlinearity { Tanh, Relu, Sigmoid };

index_t rnn_cache_size(index_t T, index_t N, index_t H);
index_t rnn_workspace_size(Pass pass, index_t T, index_t N, index_t I, index_t H);

// h [N][ldh] = φ(a + bias): a [N][H] pre-activations without bias, bias [H]. No argument may be nullptr.
template <typename Real>
void rnn_pointwise_forward(Real* h, index_t ldh, const Real* a, const Real* bias, index_t N, index_t H,
                           Nonlinearity nl);

// da [N][H] = (dh + dy) ⊙ φ'(a), from h [N][ldh] = φ(a); dh [N][H] from step t+1, dy [N][lddy]. Overwrites da.
template <typename Real>
void rnn_pointwise_backward(Real* da, const Real* dh, const Real* dy, index_t lddy, const Real* h, index_t ldh,
                            index_t N, index_t H, Nonlinearity nl);

// As lstm_forward, without the cell state.
//   y [T][N][ldy] out (columns [0, H));  h_n [N][H] out;  cache [rnn_cache_size] out, training only, else nullptr
//   work [rnn_workspace_size(...)];  x [T][N][I];  h0 [N][H] or nullptr;  W_ih [H][I], W_hh [H][H];
//   b_ih, b_hh [H] or nullptr (both or neither);  batch_sizes: variable lengths, as lstm_forward takes them
template <typename Real>
void rnn_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, Real* y, index_t ldy,
                 Real* h_n, Real* cache, Real* work, Nonlinearity nl, Run run,
                 const RecurrentDropout<Real>& rd = {}, const Zoneout<Real>& zone = {});

// (zone: the RNN has no zoneout; anything but off is refused.)
// As lstm_backward, without the cell state: dx accumulated, dh0 overwritten, dW_* and db_* accumulated,
// cache consumed; dy [T][N][lddy] and dh_n [N][H] may be nullptr (zeros).
template <typename Real>
void rnn_backward(const Dims& d, const Weights<Real>& w, const Grads<Real>& g, const Recorded<Real>& fwd,
                  const OutputGrads<Real>& out, Real* dx, Real* dh0, Real* cache, Real* work, Nonlinearity nl,
                  Run run, const RecurrentDropout<Real>& rd = {}, const Zoneout<Real>& zone = {});

}  // namespace pylstm
