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
// Signatures read: outputs, then inputs, then sizes. A gradient has a `d` prefix; each declaration
// says whether it is overwritten or accumulated (+=). The caller owns all memory: kernels never allocate,
// and each cell has one function that sizes its workspace and its training cache.
// Index arithmetic is 64-bit (`index_t`); sizes handed to BLAS are checked to fit its 32-bit ints.
#pragma once

#include <cstdint>

namespace pylstm {

using index_t = std::int64_t;

// Which call a workspace is sized for.
enum class Pass { Inference, TrainingForward, Backward };

}  // namespace pylstm

namespace pylstm {

// Threads used by the kernels: the size of pylstm's pool (parallel.h); OpenBLAS itself runs single-threaded.
int get_num_threads();
void set_num_threads(int n);
// OpenBLAS's description of itself (version, build options, the core it dispatched to).
const char* blas_config();

}  // namespace pylstm
