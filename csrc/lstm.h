// LSTM: the fused gate kernels and the forward / backward-through-time loops over one layer and one direction.
//
// Gate order i, f, g, o (G = 4), as PyTorch. For each step t (see shared math notes):
//   a = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh;  i, f, o = σ(a_i, a_f, a_o);  g = tanh(a_g)
//   c_t = f ⊙ c_{t-1} + i ⊙ g;                    h_t = o ⊙ tanh(c_t)
// With peepholes (optional): a_i += p_i ⊙ c_{t-1}, a_f += p_f ⊙ c_{t-1}, a_o += p_o ⊙ c_t.
//
// The sequence functions have the BLAS-friendly shape: one GEMM projects the inputs of all T steps (in inference,
// of a block of steps at a time, so that inference needs only O(N·H) scratch), then each step is one recurrent
// GEMM and one fused element-wise pass. Backward runs only the element-wise derivative and the product dgates·W_hh
// inside the time loop; dx and the weight gradients are single GEMMs over all steps.
//
// lstm_forward and lstm_backward run the fused form of the same loops on pylstm's pool (kernels.inc, per ISA level,
// float32 and float64): each thread owns blocks of hidden units with all four gates, packs its rows of W_hh and W_ih
// once per call (or reuses a kept LstmPacked), projects its own units' inputs, and per step computes its units'
// recurrent products and gates in registers; the threads meet once per step (twice with a projection, whose
// product h = m W_hrᵀ is a second phase). Where every thread has rows and W_hh is small (sequence.h, rows_split),
// the plain cell splits the batch instead (isa/row_split.inc): each thread takes its rows through the whole
// sequence with no barrier per step. The BLAS-per-step loops below remain the reference shape (the tests run them too:
// _core._set_fused_loops, _core._set_row_split).
//
// A training forward fills `cache` (lstm_cache_size elements) with what backward needs: the activated gates,
// c_t and tanh(c_t) for every step, i.e. T·N·(G·H + 2·H) values. Backward consumes it: the gates become their
// pre-activation gradients, tanh(c_t) becomes o ⊙ tanh(c_t), and, with a projection, c_t's slot takes ∂L/∂h_t
// (both for dW_hr after the loop). So one forward supports exactly one backward.
#pragma once

#include <string>

#include "common.h"

namespace pylstm {

constexpr index_t kLstmGates = 4;

// Elements of the training cache for one layer and direction (with layer norm: detail::lstm_ln_cache_layout's).
index_t lstm_cache_size(index_t T, index_t N, index_t H, bool layer_norm = false);

// Elements of scratch a call of the given pass needs (the caller allocates it once per call).
index_t lstm_workspace_size(Pass pass, index_t T, index_t N, index_t I, index_t H, index_t P,
                            bool layer_norm = false);

// ---- one step's element-wise work (plain loops: the documentation and the portable fallback) ----
// No argument of these two may be nullptr (the sequence functions pass zeros from their workspace instead), and
// no two may overlap except as stated.

// Applies the gate non-linearities to the pre-activations in `gates` (bias not yet added) and advances the state.
//   h       [N][ldh]  out: h_t in columns [0, H)
//   c       [N][H]    out: c_t (must not alias c_prev)
//   tc      [N][H]    out: tanh(c_t)
//   gates   [N][G*H]  in: x W_ihᵀ + h W_hhᵀ;  out: activated gates i, f, g, o
//   c_prev  [N][H]    c_{t-1}
//   bias    [G*H]     b_ih + b_hh
template <typename Real>
void lstm_pointwise_forward(Real* h, index_t ldh, Real* c, Real* tc, Real* gates, const Real* c_prev,
                            const Real* bias, index_t N, index_t H);

// Differentiates one step from its cached outputs.
//   dgates  [N][G*H]  in: activated gates;  out: gradient w.r.t. the pre-activations a (overwritten)
//   dc      [N][H]    in: ∂L/∂c_t from step t+1;  out: ∂L/∂c_{t-1} (updated in place)
//   dh      [N][H]    ∂L/∂h_t arriving from step t+1 (read only)
//   dy      [N][lddy] ∂L/∂h_t from the layer output, columns [0, H)
//   c_prev  [N][H]    c_{t-1}
//   tc      [N][H]    in: tanh(c_t);  out: o ⊙ tanh(c_t) (the projection's input, which backward needs for dW_hr)
template <typename Real>
void lstm_pointwise_backward(Real* dgates, Real* dc, const Real* dh, const Real* dy, index_t lddy,
                             const Real* c_prev, Real* tc, index_t N, index_t H);

// ---- packed weights kept between calls (float32) ----

// A packed copy of one layer's weights (W_ih, W_hh and the summed bias, in the layout of the ISA level in use) that
// a caller may keep between calls while the weights do not change. `data` holds lstm_packed_size(I, H) floats;
// `ready` says it holds the current weights, so a call skips packing; a call given ready == false packs into it
// and sets ready. The caller owns the rule that makes `ready` true only for unchanged weights.
struct LstmPacked {
  float* data;
  bool ready;
};

index_t lstm_packed_size(index_t I, index_t H);

// Packs W_ih [G*H][I], W_hh [G*H][H] and b_ih + b_hh ([G*H] each, or nullptr for none) into packed; sets ready.
//   work [G*H]
void lstm_pack(LstmPacked& packed, float* work, const float* W_ih, const float* W_hh, const float* b_ih,
               const float* b_hh, index_t I, index_t H);

// One time step of a stack of L float32 LSTM layers without projection, inference: the streaming form. One
// parallel region per step; the threads meet once per layer.
//   h_new  [L][N][H]  out: h_t of every layer (the last layer's is the stack's output)
//   c      [L][N][H]  c_{t-1} in, c_t out (in place)
//   work   [N][G*H]
//   x      [N][I0]    the first layer's input
//   h_prev [L][N][H]  h_{t-1}; must not overlap h_new
//   packed [L]        each layer's ready packed weights (layer 0 packed for I0 inputs, the others for H)
// `descending`: each thread runs its unit blocks in descending order. A caller alternates it from step to step: when
// the weights are more than a thread's L2 keeps, the blocks a step read last are then the first the next one reads,
// while they are still in L2, where reading them in the same order every step finds each block evicted just before
// its turn. 2-layer stream, I = H = 256 (2 MB of packed weights per thread), 2-core Xeon 6/207 with 2 MB of L2 per
// core, 2026-12-06, the two orders taking turns every 200 steps in one process: alternating took 0.975-0.985 of
// the time of the fixed order (medians over 290-460 pairs, three processes). Without effect where the weights fit.
void lstm_stream_step(float* h_new, float* c, float* work, const float* x, const float* h_prev,
                      const float* const* packed, index_t L, index_t N, index_t I0, index_t H, bool descending);

// How many steps' input projections inference computes per block, for the given split ("rows": the plain row split
// and the layer-norm loop, one OpenBLAS product per block; "units": the unit split's own-tile blocks).
index_t lstm_projection_block_steps(const std::string& split, index_t T, index_t N, index_t I, index_t H);

// ---- a whole sequence ----

// Runs T steps from (h0, c0). With run.reverse, step order is t = T-1 … 0 (the backward direction of a
// bidirectional layer); y[t] is always the state after consuming x[t]. With a projection (LSTMP, PyTorch's
// proj_size), h_t = (o ⊙ tanh c_t) W_hrᵀ has P < H values; without one, w.W_hr is nullptr and d.P = d.H.
//   d, w     the sizes and weights (common.h); peepholes (w.peep) are not combined with a projection
//   x        [T][N][I];  h0 [N][P], c0 [N][H], or nullptr for zeros
//   y        [T][N][ldy]  out: h_t in columns [0, P); other columns are left untouched
//   h_n [N][P], c_n [N][H]  out: the state after the last step processed (overwritten)
//   cache    [lstm_cache_size(T, N, H)]  out, training only; nullptr for inference
//   work     [lstm_workspace_size(cache ? TrainingForward : Inference, T, N, I, H, P)]
//   run      direction and variable lengths (common.h). With run.batch_sizes, y is zero on rows past their end; a
//            row's final state is taken at its own last step, and in reverse a row starts at its last step from h0
//            and c0. The backward reads x on running rows only for dx but on all rows for dW_ih: padding rows of x
//            must be finite (the layers zero them).
//   packed   the fused float32 loop's kept packed weights (see LstmPacked), or nullptr to pack into `work`; other
//            paths leave it alone
//   rd       recurrent dropout (common.h), training only; its mask multiplies h_{t-1} (the projected h with a
//            projection) where it enters the recurrent product; peepholes read the unmasked c
//   zone     zoneout (common.h): masks in training, their expectation in inference; the cache then keeps the zoned
//            c_t and tanh(c̃_t) of the unzoned one. Recurrent dropout masks the zoned h_t.
//
// With layer norm (w.ln_ih, ... given; Ba et al. 2016 in haste's parameterisation, reference.lstm_ln_forward):
//   a_t = LN(x_t W_ihᵀ; γ_ih) + LN(h̄_{t-1} W_hhᵀ; γ_hh) + b_ih + b_hh   (each LN over a row's 4H values)
//   c̃_t = f ⊙ c_{t-1} + i ⊙ g,   h̃_t = o ⊙ tanh(LN(c̃_t; γ_c) + β_c)  (over the row's H values)
// with LN(v; γ) = γ ⊙ (v − mean v) / √(var v + 1e-5), h̄_{t-1} = h_{t-1} or, with recurrent dropout, its masked
// form, and zoneout applied to the normalised cell's new state (c_t = d_c ⊙ c_{t-1} + (1 − d_c) ⊙ c̃_t; h_t
// likewise from h̃_t). Not with a projection, peepholes or kept packed weights; the cache is laid out by
// detail::lstm_ln_cache_layout (and rd.masked is left alone: the cache keeps what the products read). The loop
// splits rows across threads (detail::LstmLnT); it is also what runs under _set_fused_loops(False).
template <typename Real>
void lstm_forward(const Dims& d, const Weights<Real>& w, const Real* x, const Real* h0, const Real* c0, Real* y,
                  index_t ldy, Real* h_n, Real* c_n, Real* cache, Real* work, Run run, LstmPacked* packed = nullptr,
                  const RecurrentDropout<Real>& rd = {}, const Zoneout<Real>& zone = {});

// Backpropagates through the T steps of one lstm_forward(training) call, given the gradients of its outputs.
//   d, w        as given to the forward (w.b_ih and w.b_hh are not read)
//   g           the weights' gradients, accumulated (g.dW_hr with a projection, g.dpeep with peepholes)
//   fwd         the forward's x, y and initial state, exactly as it read and wrote them (with batch_sizes, y must
//               be zero past each row's end, as the forward left it when given zeros)
//   out         ∂L/∂y, ∂L/∂h_n, ∂L/∂c_n (each nullptr for zeros)
//   dx          [T][N][I] accumulated (+=), so both directions of a layer can share it; nullptr skips it
//   dh0 [N][P], dc0 [N][H]  overwritten with ∂L/∂h0, ∂L/∂c0 (the loop keeps its running ∂L/∂h_t, ∂L/∂c_t there)
//   cache       consumed: the forward's cache, overwritten with the gates' pre-activation gradients
//   work        [lstm_workspace_size(Backward, T, N, I, H, P)]
//   run, rd, zone  as given to the forward (rd.masked as the forward filled it)
template <typename Real>
void lstm_backward(const Dims& d, const Weights<Real>& w, const Grads<Real>& g, const Recorded<Real>& fwd,
                   const OutputGrads<Real>& out, Real* dx, Real* dh0, Real* dc0, Real* cache, Real* work, Run run,
                   const RecurrentDropout<Real>& rd = {}, const Zoneout<Real>& zone = {});

}  // namespace pylstm
