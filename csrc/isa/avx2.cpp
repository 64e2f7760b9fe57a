// The AVX2+FMA level (x86-64-v3): kernels.inc with 8 float lanes; CMake compiles this file with -march=x86-64-v3.
#define PYLSTM_ISA_NS avx2
#define PYLSTM_ISA_NAME "avx2"
#define PYLSTM_LANES 8
#define PYLSTM_TILE_ROWS 3
#define PYLSTM_TILE_GATES 4
#define PYLSTM_ROWS 2
#define PYLSTM_BACK_ROWS 6
#define PYLSTM_BACK_VECTORS 2
#include "kernels.inc"
