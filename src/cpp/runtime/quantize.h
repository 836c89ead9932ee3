// The one int8 quantization rule of s2sext: symmetric, one scale per row (a weight's output row,
// an embedding's token row).
//
// Letters: N rows, K columns.
// q[n, k] = round_half_even(x[n, k] / scale[n]), in [-127, 127]; scale[n] = max_k |x[n, k]| / 127 in
// float32. The rule is idempotent (for scales that are normal floats, |max| >= 127 * FLT_MIN):
// dequantizing (q * scale, one float32 product) and quantizing again gives the same q and scale
// bit for bit. An int8 model file
// stores its matrices dequantized-then-requantized exactly, so every loader (float32 parameters in
// Python, the C++ engine quantizing again) sees the same int8 values. A row of zeros has scale 0.
#pragma once
#include <cstdint>

namespace s2s {

// The row's scale (x must be finite; the caller checks).
float int8_row_scale(const float* x, int64_t K);

// q[K] from x[K] and the row's scale (scale 0: all zeros).
void quantize_int8_row(const float* x, int64_t K, float scale, int8_t* q);

// x[K] = q * scale in float32: the value an int8 matrix stands for.
void dequantize_int8_row(const int8_t* q, int64_t K, float scale, float* x);

}  // namespace s2s
