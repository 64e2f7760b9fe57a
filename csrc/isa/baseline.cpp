// The baseline level: kernels.inc with 4 float lanes, built with the compiler's default flags for the target
// (SSE2 on x86-64, where the level is called "sse2"; NEON on aarch64, where it is called "generic").
#define PYLSTM_ISA_NS baseline
#if defined(__x86_64__) || defined(_M_X64)
#define PYLSTM_ISA_NAME "sse2"
#else
#define PYLSTM_ISA_NAME "generic"
#endif
#define PYLSTM_LANES 4
#define PYLSTM_TILE_ROWS 3
#define PYLSTM_TILE_GATES 4
#define PYLSTM_ROWS 2
#define PYLSTM_BACK_ROWS 6
#define PYLSTM_BACK_VECTORS 2
#include "kernels.inc"
