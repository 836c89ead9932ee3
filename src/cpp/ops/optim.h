// Optimiser steps over flat parameter arrays: the squared norm of gradients (for global clipping)
// and Adam's update with the clipping scale fused in, so that a step reads each array once.
//
//   g'  = scale * g
//   m   = beta1 * m + (1 - beta1) * g'
//   v   = beta2 * v + (1 - beta2) * g'^2
//   p  -= step_size * m / (sqrt(v) * inv_sqrt_bias2 + eps)      (PyTorch's Adam, eps outside)
//   with step_size = lr / (1 - beta1^t), inv_sqrt_bias2 = 1 / sqrt(1 - beta2^t)
#pragma once
#include <cstdint>

namespace s2s {

// sum_i g[i]^2, accumulated in float64.
template <class T>
double sum_squares(const T* g, int64_t n);

struct AdamStep {
  double scale;           // gradient multiplier (clipping), 1 for none
  double beta1, beta2, eps;
  double step_size;       // lr / (1 - beta1^t)
  double inv_sqrt_bias2;  // 1 / sqrt(1 - beta2^t)
};

// p, m, v [n] updated in place; g [n] read.
template <class T>
void adam_update(T* p, T* m, T* v, const T* g, int64_t n, const AdamStep& step);

}  // namespace s2s
