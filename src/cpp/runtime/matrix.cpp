// Prepared inference weights and their product (matrix.h).
#include "runtime/matrix.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/blas.h"
#include "runtime/parallel.h"
#include "runtime/quantize.h"

namespace s2s {

uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u) return static_cast<uint16_t>(bits >> 16 | ((bits & 0xffff) ? 0x40 : 0));
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

namespace {

// m's int8 rows, scales and row sums from columns [c0, c1) of data [rows, cols]. The scale is the
// whole row's (the one rule applies to a parameter's rows; a slice quantized on its own would
// not be idempotent with the int8 model files, which quantize whole parameters).
void quantize_weights(WeightMatrix& m, const float* data, int64_t cols, int64_t c0) {
  const int64_t Kp = int8_padded_cols(m.cols);
  // the kernels' int32 sums: VNNI adds (x + 128) * w, up to 255 * 127 per column
  if (Kp > 65536)
    throw std::invalid_argument("int8 weights take at most 65536 columns; this matrix has " + std::to_string(m.cols));
  m.i8.assign(static_cast<size_t>(m.rows * Kp), int8_t{0});
  m.i8_scale.resize(static_cast<size_t>(m.rows));
  m.i8_row_sum.resize(static_cast<size_t>(m.rows));
  std::vector<int8_t> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < m.rows; ++r) {
    const float* x = data + r * cols;
    m.i8_scale[r] = int8_row_scale(x, cols);
    quantize_int8_row(x, cols, m.i8_scale[r], row.data());
    int8_t* q = m.i8.data() + r * Kp;
    int32_t sum = 0;
    for (int64_t k = 0; k < m.cols; ++k) sum += q[k] = row[c0 + k];
    m.i8_row_sum[r] = sum;
  }
}

}  // namespace

WeightMatrix prepare_weights(const float* data, int64_t rows, int64_t cols, int64_t c0, int64_t c1,
                             WeightType type) {
  WeightMatrix m;
  m.rows = rows;
  m.cols = c1 - c0;
  m.type = type;
  m.f32.resize(static_cast<size_t>(rows * m.cols));
  if (m.cols > 0)  // (an empty matrix: the first decoder layer without extra inputs)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(m.f32.data() + r * m.cols, data + r * cols + c0, sizeof(float) * m.cols);
  if (type == WeightType::bfloat16) {
    m.bf16.resize(m.f32.size());
    for (size_t i = 0; i < m.f32.size(); ++i) m.bf16[i] = to_bf16(m.f32[i]);
    Buffer<float>().swap(m.f32);  // bf16 only: half the memory, half the bytes per step
  }
  if (type == WeightType::int8) {
    quantize_weights(m, data, cols, c0);
    Buffer<float>().swap(m.f32);  // int8 only: a quarter of the bytes per step
  }
  return m;
}

void pack_panels(WeightMatrix& m) {
  if (!m.is_f32() || m.rows == 0 || m.cols == 0 || m.in_panels()) return;
  const int64_t P = (m.rows + kPanelRows - 1) / kPanelRows, K = m.cols;
  m.panels.assign(static_cast<size_t>(P * K * kPanelRows), 0.0f);
  for (int64_t n = 0; n < m.rows; ++n)
    for (int64_t k = 0; k < K; ++k)
      m.panels[static_cast<size_t>(((n / kPanelRows) * K + k) * kPanelRows + n % kPanelRows)] = m.f32[n * K + k];
  Buffer<float>().swap(m.f32);
}

namespace {

// A thread's share of a product is at least this many weights (256 KiB of float32: a single row's
// product reads memory, and a smaller share costs less than waking a thread) or, with many rows,
// at least this many multiply-adds (the product computes more than it reads).
constexpr int64_t kMinShareWeights = 65536;
constexpr int64_t kMinShareMacs = 262144;

// Runs fn(r0, r1) on ranges of whole blocks of `block` weight rows (8; a panel's 16), split
// between threads.
template <class F>
void split_weight_rows(const WeightMatrix& W, int64_t M, F&& fn, int64_t block = 8) {
  const int64_t blocks = (W.rows + block - 1) / block;
  const int64_t share = std::min(kMinShareWeights, kMinShareMacs / std::max<int64_t>(M, 1));
  const int64_t min_blocks = (share + block * W.cols - 1) / (block * W.cols);
  parallel_ranges(blocks, min_blocks, [&](int64_t blk0, int64_t blk1) {
    fn(blk0 * block, std::min(W.rows, blk1 * block));
  });
}

// float32 products of up to 8 rows run on gemv_batch, and of up to 11 when the matrix has at least
// 1024 rows; the others on gemm() (BLAS sgemm). Measured at the decoder's shapes (N = 59 to 8000,
// K = 256 and 512, 1 and 2 threads): up to 8 rows the kernel is at least as fast as gemm()'s own
// GEMV loop (one row after another over each block of weights); from 9 to 11 rows it is faster than
// sgemm, which packs all the weights on every call, except on a small matrix (N = 59: its last
// N % 8 rows take the plain loop, and sgemm's packing costs little); from 12 rows on sgemm, whose
// packed micro-kernel keeps more sums in registers and needs no horizontal additions, is faster.
// bfloat16 weights have no BLAS: gemm_bf16 for any M (on the native path at least as fast as the
// better float32 route at those shapes).
constexpr int64_t kMaxKernelRows = 8;
constexpr int64_t kMaxKernelRowsLarge = 11;
constexpr int64_t kLargeRows = 1024;

bool kernel_is_faster(const WeightMatrix& W, int64_t M) {
  return M <= kMaxKernelRows || (M <= kMaxKernelRowsLarge && W.rows >= kLargeRows);
}

}  // namespace

void matmul(const WeightMatrix& W, const float* x, int64_t M, float* y, bool accumulate, ProductRoute route) {
  if (W.cols == 0) {
    if (!accumulate) std::fill(y, y + M * W.rows, 0.0f);
    return;
  }
  if (M <= 0) return;
  if (W.is_int8()) return matmul_int8(W, x, M, y, accumulate);
  const float beta = accumulate ? 1.0f : 0.0f;
  if (W.in_panels()) {
    const KernelTable<float>& k = kernels<float>();
    split_weight_rows(W, M, [&](int64_t r0, int64_t r1) {  // whole panels per thread
      k.gemm_panels(W.panels.data() + r0 * W.cols, W.cols, x, W.cols, y + r0, W.rows, r1 - r0, M, beta);
    }, kPanelRows);
    return;
  }
  if (W.is_bf16()) {
    const KernelTable<float>& k = kernels<float>();
    split_weight_rows(W, M, [&](int64_t r0, int64_t r1) {
      k.gemm_bf16(W.bf16.data() + r0 * W.cols, W.cols, x, W.cols, y + r0, W.rows, r1 - r0, W.cols, M, beta);
    });
    return;
  }
  if (route == ProductRoute::kernel || (route == ProductRoute::automatic && kernel_is_faster(W, M))) {
    const KernelTable<float>& k = kernels<float>();
    split_weight_rows(W, M, [&](int64_t r0, int64_t r1) {
      const float* w = W.f32.data() + r0 * W.cols;
      // one row: the GEMV itself (the same sums as gemv_batch's, without its loop over inputs)
      if (M == 1) k.gemv(w, W.cols, x, y + r0, r1 - r0, W.cols, 1.0f, beta);
      else k.gemv_batch(w, W.cols, x, W.cols, y + r0, W.rows, r1 - r0, W.cols, M, beta);
    });
    return;
  }
  gemm<float>(Trans::no, Trans::yes, M, W.rows, W.cols, 1.0f, x, W.cols, W.f32.data(), W.cols, beta, y, W.rows);
}

void matmul_int8(const WeightMatrix& W, const float* x, int64_t M, float* y, bool accumulate) {
  const int64_t N = W.rows, K = W.cols, Kp = int8_padded_cols(K);
  if (K == 0) {
    if (!accumulate) std::fill(y, y + M * N, 0.0f);
    return;
  }
  const KernelTable<float>& k = kernels<float>();
  // the calling thread's scratch (the pool's threads see it through the pointers below)
  thread_local Buffer<int8_t> xq_buffer;
  thread_local Buffer<float> x_scale_buffer;
  thread_local Buffer<int32_t> acc_buffer;
  if (xq_buffer.size() < static_cast<size_t>(M * Kp)) xq_buffer.resize(static_cast<size_t>(M * Kp));
  if (x_scale_buffer.size() < static_cast<size_t>(M)) x_scale_buffer.resize(static_cast<size_t>(M));
  if (acc_buffer.size() < static_cast<size_t>(M * N)) acc_buffer.resize(static_cast<size_t>(M * N));
  int8_t* xq = xq_buffer.data();
  float* x_scale = x_scale_buffer.data();
  int32_t* acc = acc_buffer.data();
  k.quantize_rows_i8(x, K, xq, Kp, x_scale, M, K, Kp);
  constexpr int64_t kBlock = 16;
  // at least about 64 KiB of weights per thread: less is not worth a hand-over
  parallel_ranges((N + kBlock - 1) / kBlock, 65536 / (kBlock * Kp) + 1, [&](int64_t blk0, int64_t blk1) {
    const int64_t r0 = blk0 * kBlock, r1 = std::min(N, blk1 * kBlock);
    k.gemm_i8(W.i8.data() + r0 * Kp, Kp, W.i8_row_sum.data() + r0, xq, Kp, acc + r0, N, r1 - r0, Kp, M);
    // float(acc) is exact below 2^24; either way this one expression makes the bits of every path
    for (int64_t m = 0; m < M; ++m) {
      const float xs = x_scale[m];
      const int32_t* a = acc + m * N;
      float* out = y + m * N;
      if (accumulate)
        for (int64_t n = r0; n < r1; ++n) out[n] += static_cast<float>(a[n]) * (xs * W.i8_scale[n]);
      else
        for (int64_t n = r0; n < r1; ++n) out[n] = static_cast<float>(a[n]) * (xs * W.i8_scale[n]);
    }
  });
}

}  // namespace s2s
