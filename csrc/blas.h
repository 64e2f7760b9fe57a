// Typed GEMM over the scipy-openblas32 CBLAS (symbols carry the `scipy_` prefix, ints are 32-bit).
#pragma once

#include <climits>
#include <stdexcept>
#include <string>

#include <cblas.h>

#include "common.h"

namespace pylstm {

// BLAS takes 32-bit ints: refuse, before any work, a size that does not fit.
inline blasint blas_int(index_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw std::length_error(std::string("pylstm: ") + what + " = " + std::to_string(v) +
                            " exceeds the 32-bit BLAS limit");
  return static_cast<blasint>(v);
}

// C[M][N] = alpha * op(A) op(B) + beta * C, row-major; ta/tb say whether A/B are used transposed.
inline void gemm(bool ta, bool tb, index_t M, index_t N, index_t K, float alpha, const float* A,
                 index_t lda, const float* B, index_t ldb, float beta, float* C, index_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blas_int(M, "M"), blas_int(N, "N"), blas_int(K, "K"), alpha, A, blas_int(lda, "lda"), B,
                    blas_int(ldb, "ldb"), beta, C, blas_int(ldc, "ldc"));
}

inline void gemm(bool ta, bool tb, index_t M, index_t N, index_t K, double alpha, const double* A,
                 index_t lda, const double* B, index_t ldb, double beta, double* C, index_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blas_int(M, "M"), blas_int(N, "N"), blas_int(K, "K"), alpha, A, blas_int(lda, "lda"), B,
                    blas_int(ldb, "ldb"), beta, C, blas_int(ldc, "ldc"));
}

}  // namespace pylstm
