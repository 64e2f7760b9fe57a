// Typed GEMM over the scipy-openblas32 CBLAS (symbols carry the `scipy_` prefix, ints are 32-bit), split across
// pylstm's thread pool.
#pragma once

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include <cblas.h>

#include "common.h"
#include "parallel.h"

namespace pylstm {

// BLAS takes 32-bit ints: refuse, before any work, a size that does not fit.
inline blasint blas_int(index_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw std::length_error(std::string("pylstm: ") + what + " = " + std::to_string(v) +
                            " exceeds the 32-bit BLAS limit");
  return static_cast<blasint>(v);
}

namespace detail {

// One single-threaded BLAS call (OpenBLAS runs with one thread; see parallel.h).
inline void gemm1(bool ta, bool tb, index_t M, index_t N, index_t K, float alpha, const float* A, index_t lda,
                  const float* B, index_t ldb, float beta, float* C, index_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
                    static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

inline void gemm1(bool ta, bool tb, index_t M, index_t N, index_t K, double alpha, const double* A, index_t lda,
                  const double* B, index_t ldb, double beta, double* C, index_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
                    static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

// Below this many flops a product runs unsplit: a split would cost more in synchronisation than it saves.
constexpr double kSplitFlops = 1 << 18;

}  // namespace detail

// C[M][N] = alpha * op(A) op(B) + beta * C, row-major; ta/tb say whether A/B are used transposed.
// Large products are split across the pool into get_num_threads() parts along the longer side of C (columns in
// multiples of 16). Each part is one single-threaded call, and the parts are the same whichever threads run them,
// so a result depends on the thread setting only, never on the pool being busy.
template <typename Real>
void gemm(bool ta, bool tb, index_t M, index_t N, index_t K, Real alpha, const Real* A, index_t lda,
          const Real* B, index_t ldb, Real beta, Real* C, index_t ldc) {
  blas_int(M, "M"), blas_int(N, "N"), blas_int(K, "K");
  blas_int(lda, "lda"), blas_int(ldb, "ldb"), blas_int(ldc, "ldc");
  const int parts = get_num_threads();
  if (parts == 1 || in_parallel_region() || 2.0 * M * N * K < detail::kSplitFlops) {
    detail::gemm1(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const bool by_rows = M >= N;
  const index_t blocks = by_rows ? M : (N + 15) / 16;
  parallel([&](int tid, int nt) {
    for_parts(blocks, parts, tid, nt, [&](index_t b0, index_t b1) {
      if (by_rows) {
        if (b1 > b0)
          detail::gemm1(ta, tb, b1 - b0, N, K, alpha, ta ? A + b0 : A + b0 * lda, lda, B, ldb, beta, C + b0 * ldc,
                        ldc);
      } else {
        const index_t n0 = std::min<index_t>(N, b0 * 16), n1 = std::min<index_t>(N, b1 * 16);
        if (n1 > n0)
          detail::gemm1(ta, tb, M, n1 - n0, K, alpha, A, lda, tb ? B + n0 * ldb : B + n0, ldb, beta, C + n0, ldc);
      }
    });
  });
}

}  // namespace pylstm
