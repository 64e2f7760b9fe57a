// Conventions shared by every kernel of the pylstm core, stated once, and the small helpers they all use.
//
//   T  time steps        N  batch rows        I  input features
//   H  hidden units      G  gates per unit (LSTM 4: i, f, g, o — PyTorch's order)
//
// Every array is row-major and dense unless a leading dimension `ld*` says otherwise: a matrix with
// leading dimension ld has its row r starting at ptr + r*ld. A sequence [T][N][ld] is T*N such rows.
// Weights are stored as PyTorch stores them: W_ih [G*H][I], W_hh [G*H][H], b_ih and b_hh [G*H];
// the G gate blocks are contiguous row ranges of H rows each.
//
// The element-wise passes' signatures read: outputs, then inputs, then sizes. The sequence functions take the sizes,
// weights, gradients and run options as the structs below, then their arrays. A gradient has a `d` prefix; each
// declaration says whether it is overwritten or accumulated (+=). The caller owns all memory: kernels never
// allocate, and each cell has one function that lays out its workspace (and one that sizes its training cache).
// Index arithmetic is 64-bit (`index_t`); sizes handed to BLAS are checked to fit its 32-bit ints.
#pragma once

#include <cstdint>

namespace pylstm {

using index_t = std::int64_t;

// Which call a workspace is sized for.
enum class Pass { Inference, TrainingForward, Backward };

// ---- the arguments of the sequence functions (lstm.h, gru.h, rnn.h), grouped ----

// The sizes of one layer direction: T steps of N rows, I input features, H hidden units, and P, the width of h and
// of each output row (an LSTM's proj_size with a projection; H otherwise, and always H for the GRU and the RNN).
struct Dims {
  index_t T, N, I, H, P;
};

// A layer direction's weights, as PyTorch stores them: W_ih [G*H][I], W_hh [G*H][P]; b_ih, b_hh [G*H] or nullptr
// (both or neither). The LSTM's options: W_hr [P][H] (a projection) and peep [3][H] (peepholes p_i, p_f, p_o),
// each nullptr when absent, and always for the GRU and the RNN.
template <typename Real>
struct Weights {
  const Real* W_ih;
  const Real* W_hh;
  const Real* b_ih;
  const Real* b_hh;
  const Real* W_hr;
  const Real* peep;
  // The LSTM's layer norm (lstm.h): γ_ih, γ_hh [G*H], γ_c, β_c [H]; all nullptr when off (not with W_hr or peep).
  const Real* ln_ih;
  const Real* ln_hh;
  const Real* ln_c;
  const Real* ln_c_bias;
};

// The gradients of those weights, accumulated (+=), nullptr where the weight is absent (db_* may also be nullptr
// when the caller wants no bias gradient).
template <typename Real>
struct Grads {
  Real* dW_ih;
  Real* dW_hh;
  Real* db_ih;
  Real* db_hh;
  Real* dW_hr;
  Real* dpeep;
  Real* dln_ih;  // the layer norm's, with it
  Real* dln_hh;
  Real* dln_c;
  Real* dln_c_bias;
};

// What a training forward read and wrote, which its backward reads again: x [T][N][I], y [T][N][ldy] (h_t in
// columns [0, P)), and the initial state h0 [N][P] and c0 [N][H] (nullptr for zeros; c0 the LSTM's only).
template <typename Real>
struct Recorded {
  const Real* x;
  const Real* y;
  index_t ldy;
  const Real* h0;
  const Real* c0;
};

// The gradients arriving at a layer direction's outputs: dy [T][N][lddy] (columns [0, P)), dh_n [N][P] and dc_n
// [N][H] (the LSTM's only); each nullptr for zeros.
template <typename Real>
struct OutputGrads {
  const Real* dy;
  index_t lddy;
  const Real* dh_n;
  const Real* dc_n;
};

// How a call walks the sequence: reverse (t = T-1 … 0, the backward direction of a bidirectional layer), and
// batch_sizes, variable lengths in PyTorch's packed form ([T] rows running per step of a batch sorted longest
// first; nullptr: every row runs every step; fused loops only).
struct Run {
  bool reverse;
  const index_t* batch_sizes;
};

// Recurrent (variational) dropout of one layer direction in a training call (Gal & Ghahramani 2016): every step's
// recurrent product reads mask ⊙ h_{t-1} in place of h_{t-1}; the layer's output h_t is not masked.
//   mask    [N][P]        0 or 1/(1 − p), the same at every step
//   masked  [T+1][N][P]   out (forward): mask ⊙ h_t in slot t (time order) and mask ⊙ h0 in slot T (zeros for
//                         an absent h0); the backward reads it again for dW_hh. Fused loops only.
// Both nullptr: off, the plain cell.
template <typename Real>
struct RecurrentDropout {
  const Real* mask;
  Real* masked;
};

// Zoneout of one layer direction (Krueger et al. 2016): each unit keeps its previous state with probability z,
//   c_t = d_c ⊙ c_{t−1} + (1 − d_c) ⊙ c̃_t,   h_t = d_h ⊙ h_{t−1} + (1 − d_h) ⊙ h̃_t,
// where c̃_t, h̃_t are the plain cell's new state (the GRU has h only). The layer outputs the zoned h_t and carries
// both states.
//   keep_c, keep_h  [T][N][H]  training: d, 0 or 1 per step (time order), row and unit; nullptr in inference
//   z_c, z_h                   inference: the masks' expectation, used where the arrays are nullptr
// Everything nullptr and 0: off, the plain cell. Fused loops only; not with a projection or peepholes.
template <typename Real>
struct Zoneout {
  const Real* keep_c;
  const Real* keep_h;
  Real z_c, z_h;
  bool on() const { return keep_c || keep_h || z_c != Real(0) || z_h != Real(0); }
};

}  // namespace pylstm

namespace pylstm {

// Threads used by the kernels: the size of pylstm's pool (parallel.h); OpenBLAS itself runs single-threaded.
int get_num_threads();
void set_num_threads(int n);
// OpenBLAS's description of itself (version, build options, the core it dispatched to).
const char* blas_config();

}  // namespace pylstm
