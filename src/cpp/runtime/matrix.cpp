// Prepared inference weights and their product (matrix.h).
#include "runtime/matrix.h"

#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "runtime/blas.h"
#include "runtime/parallel.h"

namespace s2s {

uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u) return static_cast<uint16_t>(bits >> 16 | ((bits & 0xffff) ? 0x40 : 0));
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

WeightMatrix prepare_weights(const float* data, int64_t rows, int64_t cols, int64_t c0, int64_t c1,
                             WeightType type) {
  WeightMatrix m;
  m.rows = rows;
  m.cols = c1 - c0;
  m.f32.resize(static_cast<size_t>(rows * m.cols));
  if (m.cols > 0)  // (an empty matrix: the first decoder layer without extra inputs)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(m.f32.data() + r * m.cols, data + r * cols + c0, sizeof(float) * m.cols);
  if (type == WeightType::bfloat16) {
    m.bf16.resize(m.f32.size());
    for (size_t i = 0; i < m.f32.size(); ++i) m.bf16[i] = to_bf16(m.f32[i]);
    Buffer<float>().swap(m.f32);  // bf16 only: half the memory, half the bytes per step
  }
  return m;
}

void matmul(const WeightMatrix& W, const float* x, int64_t M, float* y, bool accumulate) {
  if (W.cols == 0) {
    if (!accumulate) std::fill(y, y + M * W.rows, 0.0f);
    return;
  }
  if (W.is_bf16()) {
    // threads take blocks of 8 weight rows; inputs go 8 at a time, each weight row widened once
    const KernelTable<float>& k = kernels<float>();
    parallel_ranges((W.rows + 7) / 8, 8192 / (W.cols + 1) + 1, [&](int64_t blk0, int64_t blk1) {
      const int64_t r0 = blk0 * 8, r1 = std::min(W.rows, blk1 * 8);
      for (int64_t m0 = 0; m0 < M; m0 += 8)
        k.gemm_bf16(W.bf16.data() + r0 * W.cols, W.cols, x + m0 * W.cols, W.cols, y + m0 * W.rows + r0, W.rows,
                    r1 - r0, W.cols, std::min<int64_t>(8, M - m0), accumulate ? 1.0f : 0.0f);
    });
    return;
  }
  gemm<float>(Trans::no, Trans::yes, M, W.rows, W.cols, 1.0f, x, W.cols, W.f32.data(), W.cols,
              accumulate ? 1.0f : 0.0f, y, W.rows);
}

}  // namespace s2s
