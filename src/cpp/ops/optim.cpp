#include "ops/optim.h"

#include <cmath>
#include <vector>

#include "runtime/parallel.h"

namespace s2s {

namespace {
constexpr int64_t kChunk = 16384;  // elements per thread share, at least
}

template <class T>
double sum_squares(const T* g, int64_t n) {
  // Fixed blocks summed in order, so the result does not depend on the thread count.
  const int64_t blocks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  parallel_ranges(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t i0 = blk * kChunk, i1 = i0 + kChunk < n ? i0 + kChunk : n;
      double acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = i0; i < i1; ++i) acc += static_cast<double>(g[i]) * g[i];
      partial[blk] = acc;
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

template <class T>
void adam_update(T* p, T* m, T* v, const T* g, int64_t n, const AdamStep& step) {
  const T scale = T(step.scale), b1 = T(step.beta1), b2 = T(step.beta2), eps = T(step.eps);
  const T c1 = T(1) - b1, c2 = T(1) - b2, lr = T(step.step_size), ib2 = T(step.inv_sqrt_bias2);
  parallel_ranges(n, kChunk, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const T gi = g[i] * scale;
      const T mi = b1 * m[i] + c1 * gi;
      const T vi = b2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] -= lr * mi / (std::sqrt(vi) * ib2 + eps);
    }
  });
}

template double sum_squares<float>(const float*, int64_t);
template double sum_squares<double>(const double*, int64_t);
template void adam_update<float>(float*, float*, float*, const float*, int64_t, const AdamStep&);
template void adam_update<double>(double*, double*, double*, const double*, int64_t, const AdamStep&);

}  // namespace s2s
