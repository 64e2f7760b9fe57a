// Issue 23's library question: would MKL's packed GEMM (cblas_sgemm_pack / cblas_sgemm_compute, `mkl-devel` on
// PyPI) run the recurrent products faster than pylstm's register tiles or OpenBLAS? One thread each, the shapes one
// thread multiplies per time step in the splits the kernels use, B packed once (as pylstm packs W_hh once per weight
// change), C += A·op(B), median of 9 rounds of ~2 GFLOP. Not part of the build or of CI; run by hand:
//
//   pip download mkl-devel mkl-include mkl --no-deps -d /tmp/mkl && cd /tmp/mkl && for w in *.whl; do unzip -qo $w -d x; done
//   OB=$(python -c "import scipy_openblas32, os; print(os.path.dirname(scipy_openblas32.__file__))")/lib
//   MKLLIB=/tmp/mkl/x/mkl-*.data/data/lib; MKLINC=/tmp/mkl/x/mkl_include-*.data/data/include
//   LIBS="-L$MKLLIB -l:libmkl_rt.so.3 -L$OB -lscipy_openblas -Wl,-rpath,$MKLLIB:$OB"
//   cc -O2 benchmarks/mkl_packed.c -I$MKLINC $LIBS -o /tmp/mkl_packed
//   MKL_THREADING_LAYER=SEQUENTIAL OPENBLAS_NUM_THREADS=1 /tmp/mkl_packed
//
// Compare with pylstm's own rate on the same products: benchmarks/breakdown.py ("recurrent" GFLOP/s per thread).
#include <mkl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

// OpenBLAS's CBLAS entry of the scipy-openblas32 build (declared here: its cblas.h and mkl.h define the same enums).
void scipy_cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
                       const float* B, int ldb, float beta, float* C, int ldc);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

enum { ROUNDS = 9 };
enum Kind { MKL_PLAIN, MKL_PACKED, OPENBLAS };

// GFLOP/s of C [M][Nc] += A [M][K] · op(B): op(B) = Wᵀ with W [Nc][K] (trans_b: the forward's h W_hhᵀ) or B [K][Nc]
// (the backward's da W_hh).
static double rate(enum Kind kind, int M, int K, int Nc, int trans_b) {
  float* A = mkl_malloc(sizeof(float) * M * K, 64);
  float* B = mkl_malloc(sizeof(float) * K * Nc, 64);
  float* C = mkl_malloc(sizeof(float) * M * Nc, 64);
  for (long i = 0; i < (long)M * K; i++) A[i] = (float)((i % 13) - 6) * 0.01f;
  for (long i = 0; i < (long)K * Nc; i++) B[i] = (float)((i % 7) - 3) * 0.01f;
  for (long i = 0; i < (long)M * Nc; i++) C[i] = 0;
  const int ldb = trans_b ? K : Nc;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  float* Bp = NULL;
  if (kind == MKL_PACKED) {
    Bp = mkl_malloc(cblas_sgemm_pack_get_size(CblasBMatrix, M, Nc, K), 64);
    cblas_sgemm_pack(CblasRowMajor, CblasBMatrix, tb, M, Nc, K, 1.f, B, ldb, Bp);
  }
  const double flops = 2.0 * M * K * Nc;
  const int reps = (int)(2e9 / flops) + 1;
  double s[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    const double t = now();
    for (int i = 0; i < reps; i++) {
      if (kind == MKL_PLAIN)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, Nc, K, 1.f, A, K, B, ldb, 1.f, C, Nc);
      else if (kind == MKL_PACKED)
        cblas_sgemm_compute(CblasRowMajor, CblasNoTrans, CblasPacked, M, Nc, K, A, K, Bp, ldb, 1.f, C, Nc);
      else
        scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, Nc, K, 1.f, A, K, B, ldb, 1.f, C, Nc);
    }
    s[r] = (now() - t) / reps;
  }
  qsort(s, ROUNDS, sizeof(double), by_value);
  mkl_free(A), mkl_free(B), mkl_free(C);
  if (Bp) mkl_free(Bp);
  return flops / s[ROUNDS / 2] / 1e9;
}

static void row(const char* name, int M, int K, int Nc, int trans_b) {
  printf("| %s | %d x %d x %d | %.0f | %.0f | %.0f |\n", name, M, K, Nc, rate(MKL_PLAIN, M, K, Nc, trans_b),
         rate(MKL_PACKED, M, K, Nc, trans_b), rate(OPENBLAS, M, K, Nc, trans_b));
}

int main(void) {
  MKLVersion v;
  mkl_get_version(&v);
  printf("MKL %d.%d.%d (%s), one thread; OpenBLAS (scipy-openblas32), one thread\n\n", v.MajorVersion,
         v.MinorVersion, v.UpdateVersion, v.Processor);
  printf("| product per step and thread | M x K x N | MKL sgemm | MKL packed | OpenBLAS |\n|---|---|---|---|---|\n");
  row("LSTM (T, 32, ., 256), row split, forward h W_hh^T", 16, 256, 1024, 1);
  row("LSTM (T, 32, ., 256), row split, backward da W_hh", 16, 1024, 256, 0);
  row("LSTM (20, 256, 512, 512), row split, forward", 128, 512, 2048, 1);
  row("LSTM (50, 64, 1024, 1024), unit split, forward", 64, 1024, 2048, 1);
  row("square 2048", 2048, 2048, 2048, 0);
  return 0;
}
