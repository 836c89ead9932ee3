// A dense layer, y = act(x W^T + b), with its backward: the output and combine layers of the model.
//
// Letters: N rows (batch x steps), I input size, O output size.
//
//   pre = x @ w^T + b         x [N,I], w [O,I], b [O] (optional)
//   y   = pre                 activation none
//   y   = tanh(pre)           activation tanh
//
// The products go through gemm() (blas.h), split over s2sext's threads, so the model never mixes
// its thread pool with another library's.
#pragma once
#include <cstdint>

namespace s2s {

enum class Activation { none, tanh };

// out: y [N,O];  in: x [N,I], w [O,I], b [O] or nullptr
template <class T>
void linear_forward(T* y, const T* x, const T* w, const T* b, int64_t N, int64_t I, int64_t O, Activation act);

// out: dx [N,I] (or nullptr: not wanted), dw [O,I], db [O] (or nullptr)
// in:  dy [N,O], x [N,I], w [O,I], y [N,O] (the forward's output; read only for tanh)
// d_pre = dy (none) or dy * (1 - y^2) (tanh); dx = d_pre @ w; dw = d_pre^T @ x; db = sum_n d_pre
template <class T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, int64_t N, int64_t I,
                     int64_t O, Activation act);

}  // namespace s2s
