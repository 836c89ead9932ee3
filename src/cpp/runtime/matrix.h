// Weights prepared once for inference, in their storage type, and the one product that reads them.
//
// Letters: N rows of a weight (its outputs), K columns (its inputs), M input rows.
// A WeightMatrix [N, K] holds float32 values, bfloat16 bits (round to nearest even) or int8 rows:
// bfloat16 halves the bytes a memory-bound decode step reads, the arithmetic stays float32; int8
// quarters them (the one int8 rule, runtime/quantize.h: a float32 scale per row) and multiplies in
// int32. Buffers are 64-byte aligned so that the SIMD kernels' rows start on cache lines.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

namespace s2s {

template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n > (std::numeric_limits<size_t>::max() >> 2) / sizeof(T)) throw std::bad_alloc();
    void* p = std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64 + 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const AlignedAllocator<U>&) const { return false; }
};

// A 64-byte aligned vector.
template <class T>
using Buffer = std::vector<T, AlignedAllocator<T>>;

enum class WeightType { float32, bfloat16, int8 };

// int8 rows are padded with zero columns to a multiple of this many bytes (one cache line, one
// 512-bit vector), so the kernels run whole vectors and need no column tails.
constexpr int64_t kInt8RowAlign = 64;

// The padded row length of an int8 matrix with K columns.
inline int64_t int8_padded_cols(int64_t K) { return (K + kInt8RowAlign - 1) / kInt8RowAlign * kInt8RowAlign; }

struct WeightMatrix {
  int64_t rows = 0, cols = 0;
  WeightType type = WeightType::float32;
  Buffer<float> f32;      // row-major, when stored as float32 (and not in panels)
  // float32 in panels of kPanelRows rows, column by column (pack_panels): the compiled decoder's
  // storage, which its product reads as one stream per panel for up to 6 inputs at a time
  Buffer<float> panels;
  Buffer<uint16_t> bf16;  // bfloat16 bits, when stored as bfloat16
  // int8: rows [rows, int8_padded_cols(cols)] (zero padding), a scale per row (the int8 rule), and
  // each row's sum of its int8 values (the VNNI kernel's unsigned-activation correction)
  Buffer<int8_t> i8;
  Buffer<float> i8_scale;
  Buffer<int32_t> i8_row_sum;

  bool is_f32() const { return type == WeightType::float32; }
  bool in_panels() const { return !panels.empty(); }
  bool is_bf16() const { return type == WeightType::bfloat16; }
  bool is_int8() const { return type == WeightType::int8; }
};

// Columns [c0, c1) of a row-major float32 [rows, cols] array, stored as `type` (int8: each row's
// scale is that of the whole row, all its columns; std::invalid_argument past 65536 columns).
WeightMatrix prepare_weights(const float* data, int64_t rows, int64_t cols, int64_t c0, int64_t c1,
                             WeightType type);

// Rows per panel of float32 weights in panels (the kernel table's gemm_panels).
constexpr int64_t kPanelRows = 16;

// A float32 matrix's rows moved into panels: panels[(p * cols + k) * kPanelRows + j] = row
// p * kPanelRows + j, column k (rows past the last zero); the row-major copy is freed. matmul then
// runs the kernel table's gemm_panels for every M: each result is summed in one order whatever M
// and the thread count. Other types, and a matrix without rows or columns, are left as they are.
void pack_panels(WeightMatrix& m);

// float32 -> bfloat16 bits, rounding to nearest even (NaN stays NaN).
uint16_t to_bf16(float x);

// Which product matmul runs for float32 weights: its own choice (automatic), or one forced (tests
// and measurements of the crossover). bfloat16 weights have one product, the kernel table's.
enum class ProductRoute { automatic, kernel, blas };

// y [M, W.rows] = x [M, W.cols] @ W^T, or y += that (accumulate). float32 weights in panels go to
// gemm_panels (threads take whole panels; route ignored). Other float32 weights go to the kernel
// table's gemv_batch (each weight read once for all M rows) up to 8 or 11 rows, depending on the
// matrix (matrix.cpp, measured), to gemm() (BLAS) above; bfloat16 weights always to gemm_bf16; int8 weights to matmul_int8
// below (route ignored). Threads
// take blocks of 8 weight rows, so a kernel result does not depend on the thread count. A matrix
// without columns gives zeros (or leaves y).
void matmul(const WeightMatrix& W, const float* x, int64_t M, float* y, bool accumulate,
            ProductRoute route = ProductRoute::automatic);

// The int8 product: each row of x quantized at run time by the int8 rule (x_scale[m] =
// max|x[m]|/127, round half to even; x must be finite), the products summed exactly in int32 by
// the kernel table's gemm_i8, then y[m, n] = float(acc) * (x_scale[m] * w_scale[n]) (+ y[m, n] when
// accumulating), the same bits on every kernel path. Threads take blocks of 16 weight rows, each
// block read once for all M rows.
void matmul_int8(const WeightMatrix& W, const float* x, int64_t M, float* y, bool accumulate);

}  // namespace s2s
