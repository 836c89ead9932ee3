// The one door to BLAS. Every large matrix product in the core goes through gemm(); blas.cpp is the
// only file that names a BLAS symbol.
#pragma once
#include <cstdint>
#include <string>

namespace s2s {

enum class Trans { no, yes };

// Row-major C[M,N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T.
// op(A) is [M,K], op(B) is [K,N]; lda/ldb/ldc are row strides in elements. beta == 0 never reads C.
// M == 1 with B transposed (a batch-1 product with row-major weights) runs the SIMD GEMV instead.
// Large products are split over the rows or columns of C across num_threads() (parallel.h), or, for
// A^T @ op(B) with a long K (a weight gradient), over K with per-thread copies of C that are then
// added; BLAS itself runs single-threaded.
template <class T>
void gemm(Trans trans_a, Trans trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// True where gemm() runs a GEMV for such a product (few rows), which packs nothing.
bool gemm_runs_gemv(Trans trans_a, Trans trans_b, int64_t M);

struct BlasInfo {
  std::string name;     // "scipy-openblas32" or "system"
  std::string config;   // the library's own build description, where it offers one
  std::string core;     // OpenBLAS's chosen CPU core, where known
  int threads = 0;      // threads the BLAS library itself uses (1 for the bundled OpenBLAS)
};
BlasInfo blas_info();

}  // namespace s2s
