// The AVX-512 level (x86-64-v4): kernels.inc with 16 float lanes; CMake compiles this file with -march=x86-64-v4.
#define PYLSTM_ISA_NS avx512
#define PYLSTM_ISA_NAME "avx512"
#define PYLSTM_LANES 16
#define PYLSTM_TILE_ROWS 6
#define PYLSTM_TILE_GATES 4
#define PYLSTM_ROWS 4
#define PYLSTM_BACK_ROWS 6
#define PYLSTM_BACK_VECTORS 4
#include "kernels.inc"
