#include "ops/dense.h"

#include <vector>

#include "runtime/blas.h"
#include "kernels/kernels.h"
#include "runtime/parallel.h"

namespace s2s {

namespace {

// Rows per thread for an elementwise pass over [N, O]: at least ~16K elements each.
int64_t min_rows_per_thread(int64_t O) { return O >= 16384 ? 1 : (16384 + O - 1) / O; }

}  // namespace

template <class T>
void linear_forward(T* y, const T* x, const T* w, const T* b, int64_t N, int64_t I, int64_t O, Activation act) {
  if (N == 0 || O == 0) return;
  gemm<T>(Trans::no, Trans::yes, N, O, I, T(1), x, I, w, I, T(0), y, O);
  if (!b && act == Activation::none) return;
  const KernelTable<T>& k = kernels<T>();
  const std::vector<T> zeros(b ? 0 : static_cast<size_t>(O), T(0));
  const T* bias = b ? b : zeros.data();
  parallel_ranges(N, min_rows_per_thread(O), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) k.bias_activation(y + n * O, bias, O, act == Activation::tanh);
  });
}

template <class T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, int64_t N, int64_t I,
                     int64_t O, Activation act) {
  const T* d_pre = dy;
  std::vector<T> d_pre_buffer;
  if (act == Activation::tanh && N * O > 0) {
    d_pre_buffer.resize(static_cast<size_t>(N * O));
    T* buf = d_pre_buffer.data();
    const KernelTable<T>& k = kernels<T>();
    parallel_ranges(N, min_rows_per_thread(O), [&](int64_t n0, int64_t n1) {
      k.tanh_backward(dy + n0 * O, y + n0 * O, buf + n0 * O, (n1 - n0) * O);
    });
    d_pre = buf;
  }
  if (db) {
    // Column sums in float64 blocks of rows: N can be tens of thousands of rows.
    std::vector<double> acc(static_cast<size_t>(O), 0.0);
    for (int64_t n = 0; n < N; ++n) {
      const T* row = d_pre + n * O;
      for (int64_t o = 0; o < O; ++o) acc[o] += row[o];
    }
    for (int64_t o = 0; o < O; ++o) db[o] = T(acc[o]);
  }
  if (N == 0) {
    for (int64_t k = 0; k < O * I; ++k) dw[k] = T(0);
    return;
  }
  gemm<T>(Trans::yes, Trans::no, O, I, N, T(1), d_pre, O, x, I, T(0), dw, I);
  if (dx) gemm<T>(Trans::no, Trans::no, N, I, O, T(1), d_pre, O, w, I, T(0), dx, I);
}

#define S2S_INSTANTIATE_DENSE(T)                                                                          \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, Activation); \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t,    \
                                   int64_t, Activation);
S2S_INSTANTIATE_DENSE(float)
S2S_INSTANTIATE_DENSE(double)

}  // namespace s2s
