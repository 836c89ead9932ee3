// The only file that calls BLAS (see blas.h). CBLAS is declared here rather than through a header so
// that the scipy-openblas32 prefix (scipy_cblas_sgemm) and a system CBLAS (cblas_sgemm) share one
// code path; the enum values are CBLAS's fixed ABI constants.
#include "runtime/blas.h"

#include <algorithm>
#include <climits>
#include <stdexcept>

#include "kernels/kernels.h"
#include "runtime/parallel.h"
#include "runtime/workspace.h"

#if defined(S2S_BLAS_SCIPY_OPENBLAS)
#define S2S_BLAS(name) scipy_##name
#else
#define S2S_BLAS(name) name
#endif

extern "C" {
using blas_int = int;  // LP64 CBLAS: the 32 in scipy-openblas32
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
void S2S_BLAS(cblas_sgemm)(int order, int ta, int tb, blas_int m, blas_int n, blas_int k, float alpha,
                           const float* a, blas_int lda, const float* b, blas_int ldb, float beta,
                           float* c, blas_int ldc);
void S2S_BLAS(cblas_dgemm)(int order, int ta, int tb, blas_int m, blas_int n, blas_int k, double alpha,
                           const double* a, blas_int lda, const double* b, blas_int ldb, double beta,
                           double* c, blas_int ldc);
void S2S_BLAS(cblas_sgemv)(int order, int trans, blas_int m, blas_int n, float alpha, const float* a, blas_int lda,
                           const float* x, blas_int incx, float beta, float* y, blas_int incy);
void S2S_BLAS(cblas_dgemv)(int order, int trans, blas_int m, blas_int n, double alpha, const double* a,
                           blas_int lda, const double* x, blas_int incx, double beta, double* y, blas_int incy);
#if defined(S2S_BLAS_SCIPY_OPENBLAS)
char* scipy_openblas_get_config(void);
char* scipy_openblas_get_corename(void);
int scipy_openblas_get_num_threads(void);
void scipy_openblas_set_num_threads(int);
#endif
}

namespace s2s {
namespace {

blas_int to_blas_int(int64_t v) {
  if (v < 0 || v > INT_MAX) throw std::length_error("matrix dimension exceeds the 32-bit BLAS interface");
  return static_cast<blas_int>(v);
}

void call_gemm(int ta, int tb, blas_int m, blas_int n, blas_int k, float alpha, const float* a,
               blas_int lda, const float* b, blas_int ldb, float beta, float* c, blas_int ldc) {
  S2S_BLAS(cblas_sgemm)(kRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void call_gemm(int ta, int tb, blas_int m, blas_int n, blas_int k, double alpha, const double* a,
               blas_int lda, const double* b, blas_int ldb, double beta, double* c, blas_int ldc) {
  S2S_BLAS(cblas_dgemm)(kRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void call_gemv(int trans, blas_int m, blas_int n, float alpha, const float* a, blas_int lda, const float* x,
               float beta, float* y) {
  S2S_BLAS(cblas_sgemv)(kRowMajor, trans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}
void call_gemv(int trans, blas_int m, blas_int n, double alpha, const double* a, blas_int lda, const double* x,
               double beta, double* y) {
  S2S_BLAS(cblas_dgemv)(kRowMajor, trans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

// The bundled OpenBLAS is ours alone (its symbols carry the scipy_ prefix, loaded privately), so
// its thread count is ours to set: one, with parallelism decided by the core (parallel.h).
void make_blas_single_threaded() {
#if defined(S2S_BLAS_SCIPY_OPENBLAS)
  static const bool done = (scipy_openblas_set_num_threads(1), true);
  (void)done;
#endif
}

// Below this many flops a product runs on one thread: starting a thread costs tens of microseconds.
constexpr double kSplitFlops = 16e6;
constexpr int64_t kMinSplitRows = 32;
// A batch-1 GEMV is split when each thread gets at least this many weights (256 KiB of float32).
constexpr int64_t kMinGemvSplitElements = 65536;
// Products with at most this many rows (of C) and row-major weights go to our GEMV, not BLAS.
constexpr int64_t kMaxGemvRows = 8;
// A product whose inner dimension is at least this long, with A transposed (a weight gradient,
// dW = dY^T @ X over many rows), is split along K: each thread sums its share of the rows into its
// own copy of C, and the copies are added. Splitting the rows of C instead has each thread pack
// every other column block of dY^T, which made the split slower than one thread on some shapes.
// Below this K the extra pass over C would cost more than the split saves.
constexpr int64_t kMinSplitInner = 1024;
// The split keeps (ranges - 1) extra copies of C in the caller's scratch, which stays allocated:
// at most this many elements in all (16 MiB of float32), so a large output (an output layer's
// weight gradient, [V, H]) takes fewer ranges or the split over C's rows instead.
constexpr int64_t kMaxInnerSplitCopies = int64_t(1) << 22;

// Ranges for gemm_split_inner of an A^T @ op(B) product, or 1 where it does not apply.
int64_t inner_split_ranges(int64_t M, int64_t N, int64_t K) {
  if (K < kMinSplitInner) return 1;
  int64_t ranges = K / (kMinSplitInner / 2);
  if (ranges > num_threads()) ranges = num_threads();
  const int64_t by_memory = 1 + kMaxInnerSplitCopies / (M * N);
  return ranges < by_memory ? ranges : by_memory;
}

template <class T>
void blas_gemm(Trans trans_a, Trans trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
               int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  call_gemm(trans_a == Trans::yes ? kTrans : kNoTrans, trans_b == Trans::yes ? kTrans : kNoTrans,
            to_blas_int(M), to_blas_int(N), to_blas_int(K), alpha, A, to_blas_int(lda), B,
            to_blas_int(ldb), beta, C, to_blas_int(ldc));
}

// C = alpha * A^T @ op(B) + beta * C with the K rows of A (and of op(B)) split into `ranges` across
// threads: range 0 writes C itself (with beta), range r > 0 writes partials[r-1] (beta 0); then the
// partials are added to C in range order, threads taking rows of C. The same number of ranges gives
// the same sums (where the pool cannot run, one product: other bits).
template <class T>
void gemm_split_inner(int64_t ranges, Trans trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                      int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  T* partials = scratch<T>(Scratch::gemm_partials, (ranges - 1) * M * N);
  auto range_product = [&](int64_t r) {
    const int64_t k0 = K * r / ranges, k1 = K * (r + 1) / ranges;
    const T* B_k = trans_b == Trans::yes ? B + k0 : B + k0 * ldb;
    if (r == 0) blas_gemm(Trans::yes, trans_b, M, N, k1 - k0, alpha, A, lda, B_k, ldb, beta, C, ldc);
    else blas_gemm(Trans::yes, trans_b, M, N, k1 - k0, alpha, A + k0 * lda, lda, B_k, ldb, T(0),
                   partials + (r - 1) * M * N, N);
  };
  if (!detail::run_on_pool(ranges, range_product)) {  // no threads to be had: one product
    blas_gemm(Trans::yes, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  parallel_ranges(M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t r = 1; r < ranges; ++r) {
      const T* part = partials + (r - 1) * M * N;
      for (int64_t m = m0; m < m1; ++m)
        for (int64_t n = 0; n < N; ++n) C[m * ldc + n] += part[m * N + n];
    }
  });
}

}  // namespace

template <class T>
void gemm(Trans trans_a, Trans trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  make_blas_single_threaded();
  if (M == 0 || N == 0) return;
  if (K == 0) {  // BLAS rejects a zero leading dimension; the product is empty, so C = beta * C
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta == T(0) ? T(0) : beta * C[m * ldc + n];
    return;
  }
  if (M <= kMaxGemvRows && trans_a == Trans::no && trans_b == Trans::yes) {  // gemm_runs_gemv
    // c[m] = alpha * B[N,K] a[m] + beta * c[m] for a few rows m (batch 1, a beam, a decoder batch):
    // memory-bound, our SIMD GEMV, which needs no packing of B (BLAS packs all of B per call). For
    // each block of 8 rows of B every row of a runs while the block is in L1, so B is read once.
    // Large ones are split by rows, so each core streams its share of the weights from its own
    // cache. Ranges are whole blocks of 8 rows, the kernel's blocking, so every row is summed the
    // same way whatever the split and M: our GEMV's results depend on neither the thread count nor
    // the other rows.
    const KernelTable<T>& k = kernels<T>();
    const int64_t blocks = (N + 7) / 8;
    const int64_t min_blocks = K > 0 ? (kMinGemvSplitElements / 8 + K - 1) / K : blocks;
    parallel_ranges(blocks, min_blocks, [&](int64_t blk0, int64_t blk1) {
      for (int64_t blk = blk0; blk < blk1; ++blk) {
        const int64_t n0 = blk * 8, n1 = n0 + 8 < N ? n0 + 8 : N;
        for (int64_t m = 0; m < M; ++m) k.gemv(B + n0 * ldb, ldb, A + m * lda, C + m * ldc + n0, n1 - n0, K, alpha, beta);
      }
    });
    return;
  }
  if (M == 1 && trans_a == Trans::no) {  // gemm_runs_gemv
    // c[N] = alpha * a[K] B[K,N] + beta * c with B not transposed: a GEMV over B's columns, which
    // BLAS does without sgemm's packing (a small per-batch-row product of the attention). C is
    // zeroed first when beta == 0, so that whatever it held (NaN included) is never read.
    if (beta == T(0)) std::fill(C, C + N, T(0));
    call_gemv(kTrans, to_blas_int(K), to_blas_int(N), alpha, B, to_blas_int(ldb), A, beta, C);
    return;
  }
  if (2.0 * M * N * K < kSplitFlops || num_threads() == 1 || in_parallel_region()) {
    blas_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else if (const int64_t ranges = trans_a == Trans::yes ? inner_split_ranges(M, N, K) : 1; ranges >= 2) {
    gemm_split_inner(ranges, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else if (M >= N) {  // split the rows of C (and of op(A))
    parallel_ranges(M, kMinSplitRows, [&](int64_t m0, int64_t m1) {
      const T* A_m = trans_a == Trans::yes ? A + m0 : A + m0 * lda;
      blas_gemm(trans_a, trans_b, m1 - m0, N, K, alpha, A_m, lda, B, ldb, beta, C + m0 * ldc, ldc);
    });
  } else {  // split the columns of C (and of op(B))
    parallel_ranges(N, kMinSplitRows, [&](int64_t n0, int64_t n1) {
      const T* B_n = trans_b == Trans::yes ? B + n0 * ldb : B + n0;
      blas_gemm(trans_a, trans_b, M, n1 - n0, K, alpha, A, lda, B_n, ldb, beta, C + n0, ldc);
    });
  }
}

bool gemm_runs_gemv(Trans trans_a, Trans trans_b, int64_t M) {
  return trans_a == Trans::no && (M == 1 || (M <= kMaxGemvRows && trans_b == Trans::yes));
}

template void gemm<float>(Trans, Trans, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(Trans, Trans, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

BlasInfo blas_info() {
  make_blas_single_threaded();
  BlasInfo info;
#if defined(S2S_BLAS_SCIPY_OPENBLAS)
  info.name = "scipy-openblas32";
  info.config = scipy_openblas_get_config();
  info.core = scipy_openblas_get_corename();
  info.threads = scipy_openblas_get_num_threads();
#else
  info.name = "system";
#endif
  return info;
}

}  // namespace s2s
