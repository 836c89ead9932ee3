// LSTM forward and backward; shapes and argument order in lstm.h.
// Letters: B batch, S time steps, I input size, H hidden size, G = 4H.
#include "lstm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "blas.h"
#include "kernels.h"

namespace s2s {
namespace {

template <class T>
void fill_rows_with(T* rows, int64_t n_rows, const T* row, int64_t width) {
  for (int64_t r = 0; r < n_rows; ++r) std::memcpy(rows + r * width, row, sizeof(T) * width);
}

// db [G] = sum over rows of dgates [N,G]
template <class T>
void sum_rows(T* db, const T* dgates, int64_t N, int64_t G) {
  std::fill(db, db + G, T(0));
  for (int64_t n = 0; n < N; ++n) {
    const T* row = dgates + n * G;
    for (int64_t j = 0; j < G; ++j) db[j] += row[j];
  }
}

// Weight gradients of gates = x @ w_ih^T + h @ w_hh^T, over N rows at once:
// dw_ih [G,I] = dgates^T @ x, dw_hh [G,H] = dgates^T @ h, db [G] = column sums of dgates.
template <class T>
void gate_weight_grads(T* dw_ih, T* dw_hh, T* db, const T* dgates, const T* x, const T* h, int64_t N,
                       int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  gemm<T>(Trans::yes, Trans::no, G, I, N, T(1), dgates, G, x, I, T(0), dw_ih, I);
  gemm<T>(Trans::yes, Trans::no, G, H, N, T(1), dgates, G, h, H, T(0), dw_hh, H);
  sum_rows(db, dgates, N, G);
}

}  // namespace

template <class T>
void lstm_cell_forward(T* h1, T* c1, T* gates, const T* x, const T* h0, const T* c0, const T* w_ih,
                       const T* w_hh, const T* b, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  fill_rows_with(gates, B, b, G);
  gemm<T>(Trans::no, Trans::yes, B, G, I, T(1), x, I, w_ih, I, T(1), gates, G);
  gemm<T>(Trans::no, Trans::yes, B, G, H, T(1), h0, H, w_hh, H, T(1), gates, G);
  for (int64_t n = 0; n < B; ++n)
    k.lstm_gates_forward(gates + n * G, c0 + n * H, c1 + n * H, h1 + n * H, H);
}

template <class T>
void lstm_cell_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, T* dgates, const T* dh1,
                        const T* dc1, const T* gates, const T* c1, const T* x, const T* h0,
                        const T* c0, const T* w_ih, const T* w_hh, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  std::memcpy(dc0, dc1, sizeof(T) * B * H);  // the gate kernel turns dL/dc1 into dL/dc0 in place
  for (int64_t n = 0; n < B; ++n)
    k.lstm_gates_backward(dgates + n * G, dc0 + n * H, dh1 + n * H, gates + n * G, c0 + n * H,
                          c1 + n * H, H);
  // forward: gates = x @ w_ih^T + h0 @ w_hh^T + b
  gemm<T>(Trans::no, Trans::no, B, I, G, T(1), dgates, G, w_ih, I, T(0), dx, I);
  gemm<T>(Trans::no, Trans::no, B, H, G, T(1), dgates, G, w_hh, H, T(0), dh0, H);
  gate_weight_grads(dw_ih, dw_hh, db, dgates, x, h0, B, I, H);
}

template <class T>
void lstm_forward(T* hs, T* hT, T* cT, T* gates, T* h_prev, T* c_prev, T* c, const T* x, const T* h0,
                  const T* c0, const T* w_ih, const T* w_hh, const T* b, const int64_t* lengths,
                  int64_t B, int64_t S, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  // gates[b,t] = x[b,t] @ w_ih^T + b for every step at once
  fill_rows_with(gates, B * S, b, G);
  gemm<T>(Trans::no, Trans::yes, B * S, G, I, T(1), x, I, w_ih, I, T(1), gates, G);

  // The running state [B,H]: hT/cT double as it, so they end as the state after the last step.
  std::memcpy(hT, h0, sizeof(T) * B * H);
  std::memcpy(cT, c0, sizeof(T) * B * H);
  for (int64_t t = 0; t < S; ++t) {
    for (int64_t n = 0; n < B; ++n) {
      std::memcpy(h_prev + (n * S + t) * H, hT + n * H, sizeof(T) * H);
      std::memcpy(c_prev + (n * S + t) * H, cT + n * H, sizeof(T) * H);
    }
    // gates[:,t] += h @ w_hh^T: rows of step t are S*G apart
    gemm<T>(Trans::no, Trans::yes, B, G, H, T(1), hT, H, w_hh, H, T(1), gates + t * G, S * G);
    for (int64_t n = 0; n < B; ++n) {
      T* gates_nt = gates + (n * S + t) * G;
      T* hs_nt = hs + (n * S + t) * H;
      T* c_nt = c + (n * S + t) * H;
      if (lengths && t >= lengths[n]) {  // padding: state carried, output zero
        std::fill(gates_nt, gates_nt + G, T(0));
        std::fill(hs_nt, hs_nt + H, T(0));
        std::memcpy(c_nt, cT + n * H, sizeof(T) * H);
        continue;
      }
      k.lstm_gates_forward(gates_nt, cT + n * H, c_nt, hs_nt, H);
      std::memcpy(hT + n * H, hs_nt, sizeof(T) * H);
      std::memcpy(cT + n * H, c_nt, sizeof(T) * H);
    }
  }
}

template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, T* dgates, const T* dhs,
                   const T* dhT, const T* dcT, const T* gates, const T* h_prev, const T* c_prev,
                   const T* c, const T* x, const T* w_ih, const T* w_hh, const int64_t* lengths,
                   int64_t B, int64_t S, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  // dh0/dc0 carry dL/dh and dL/dc of the state entering the step being processed; the paths from
  // hs[t] and from step t+1 join there.
  if (dhT) std::memcpy(dh0, dhT, sizeof(T) * B * H); else std::fill(dh0, dh0 + B * H, T(0));
  if (dcT) std::memcpy(dc0, dcT, sizeof(T) * B * H); else std::fill(dc0, dc0 + B * H, T(0));
  std::vector<T> dh_step(H);
  for (int64_t t = S - 1; t >= 0; --t) {
    for (int64_t n = 0; n < B; ++n) {
      T* dgates_nt = dgates + (n * S + t) * G;
      if (lengths && t >= lengths[n]) {  // padding: no gradient, the carried state passes through
        std::fill(dgates_nt, dgates_nt + G, T(0));
        continue;
      }
      T* dh_n = dh0 + n * H;
      const int64_t nt = n * S + t;
      // forward: hs[t] = h_t, which is also the state fed to step t+1
      for (int64_t j = 0; j < H; ++j) dh_step[j] = dh_n[j] + (dhs ? dhs[nt * H + j] : T(0));
      k.lstm_gates_backward(dgates_nt, dc0 + n * H, dh_step.data(), gates + nt * G,
                            c_prev + nt * H, c + nt * H, H);
      std::fill(dh_n, dh_n + H, T(0));  // refilled below by the recurrent product
    }
    // forward: gates[:,t] += h_prev[:,t] @ w_hh^T, so dL/dh_prev += dgates[:,t] @ w_hh
    gemm<T>(Trans::no, Trans::no, B, H, G, T(1), dgates + t * G, S * G, w_hh, H, T(1), dh0, H);
  }
  // forward: gates = x @ w_ih^T + h_prev @ w_hh^T + b over all B*S rows
  gemm<T>(Trans::no, Trans::no, B * S, I, G, T(1), dgates, G, w_ih, I, T(0), dx, I);
  gate_weight_grads(dw_ih, dw_hh, db, dgates, x, h_prev, B * S, I, H);
}

#define S2S_INSTANTIATE_LSTM(T)                                                                    \
  template void lstm_cell_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                     const T*, int64_t, int64_t, int64_t);                         \
  template void lstm_cell_backward<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,    \
                                      const T*, const T*, const T*, const T*, const T*, const T*,  \
                                      int64_t, int64_t, int64_t);                                  \
  template void lstm_forward<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,          \
                                const T*, const T*, const T*, const int64_t*, int64_t, int64_t,    \
                                int64_t, int64_t);                                                 \
  template void lstm_backward<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,         \
                                 const T*, const T*, const T*, const T*, const T*, const T*,       \
                                 const T*, const int64_t*, int64_t, int64_t, int64_t, int64_t);
S2S_INSTANTIATE_LSTM(float)
S2S_INSTANTIATE_LSTM(double)

}  // namespace s2s
