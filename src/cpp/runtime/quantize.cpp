// The int8 quantization rule (quantize.h).
#include "runtime/quantize.h"

#include <algorithm>
#include <cmath>

namespace s2s {
float int8_row_scale(const float* x, int64_t K) {
  float max_abs = 0.0f;
  for (int64_t k = 0; k < K; ++k) max_abs = std::max(max_abs, std::fabs(x[k]));
  // Idempotence: the dequantized maximum is 127 * scale (rounded), and (m / 127) * 127 / 127 gives
  // m / 127 back for every float32 m with a normal quotient (tests/test_quantize.py checks a whole
  // binade, and the property is invariant under powers of two).
  return max_abs / 127.0f;
}

void quantize_int8_row(const float* x, int64_t K, float scale, int8_t* q) {
  if (scale == 0.0f) {
    std::fill(q, q + K, int8_t{0});
    return;
  }
  for (int64_t k = 0; k < K; ++k) {
    // nearbyint rounds half to even in the default rounding mode; x / scale of the maximum is 127
    // up to rounding, so the clamp only guards
    const float r = std::nearbyint(x[k] / scale);
    q[k] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, r)));
  }
}

void dequantize_int8_row(const int8_t* q, int64_t K, float scale, float* x) {
  for (int64_t k = 0; k < K; ++k) x[k] = static_cast<float>(q[k]) * scale;
}

}  // namespace s2s
