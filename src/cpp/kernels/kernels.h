// Fused, memory-bound hot paths (gate math, attention rows, batch-1 GEMV), one table per SIMD path.
//
// Letters: H hidden size, G = 4H gate width, S source positions, A attention size, N rows, K columns.
// The same source (kernels_impl.h) is compiled once per instruction set into its own namespace
// (kernels_portable.cpp, kernels_avx2.cpp, kernels_avx512.cpp, kernels_avx512_vnni.cpp,
// kernels_avx512_bf16.cpp); cpu.cpp picks the table at run time.
// The portable table is the plain reference the others are tested against.
#pragma once
#include <cstdint>

namespace s2s {

template <class T>
struct KernelTable {
  // One LSTM row, forward, for n hidden units. The gate slices i, f, g, o of gates (and of bias)
  // start gate_stride apart (H for a whole row); gates holds pre-activations without the bias in,
  // activations out; c_prev [n]; c_new [n] = f*c_prev + i*g; h_new [n] = o*tanh(c_new).
  void (*lstm_gates_forward)(T* gates, const T* bias, const T* c_prev, T* c_new, T* h_new, int64_t n,
                             int64_t gate_stride);
  // One LSTM row, backward. dgates [G] out; dc [H] in: dL/dc_new from later steps, out: dL/dc_prev;
  // dh [H] = dL/dh_new; gates [G] activations; c_prev, c_new [H] from the forward. db_sum [G], when
  // not null, gains dgates (the bias gradient summed while the row is in registers).
  void (*lstm_gates_backward)(T* dgates, T* dc, const T* dh, const T* gates, const T* c_prev,
                              const T* c_new, T* db_sum, int64_t H);
  // y[N] = alpha * W[N,K] x[K] + beta * y (beta == 0 never reads y); W rows are ldw apart.
  void (*gemv)(const T* W, int64_t ldw, const T* x, T* y, int64_t N, int64_t K, T alpha, T beta);
  // The GEMV for M inputs (a beam, a small batch): Y[m, n] = W[n, :K] . X[m, :K] + beta * Y[m, n]
  // for n < N, m < M (beta == 0 never reads Y); X and Y rows are ldx and ldy apart. Register blocked
  // over weight rows and inputs, so each weight is read from memory once for all M. Each Y[m] is
  // bit for bit gemv's y for X[m] alone (alpha 1, beta 0 or 1), whatever M and however the caller
  // splits the weight rows, in blocks of 8.
  void (*gemv_batch)(const T* W, int64_t ldw, const T* X, int64_t ldx, T* Y, int64_t ldy, int64_t N, int64_t K,
                     int64_t M, T beta);
  // Dot-product scores of n_q queries: e[t, s] = scale * queries[t, :H] . keys[s, :H] for t < n_q,
  // s < S; rows of keys, queries and e are ldk, ldq and lde apart. Sums are float64 (float queries
  // are widened once into query_f64, scratch of n_q * H; unused for double): a score's rounding
  // error is multiplied by exp in the softmax, so scores are made exact to float32 rounding rather
  // than to a float32 dot product's. Register tiles of queries by keys share each load.
  void (*dot_scores)(const T* keys, int64_t ldk, const T* queries, int64_t ldq, T* e, int64_t lde,
                     int64_t n_q, int64_t S, int64_t H, double scale, double* query_f64);
  // Additive (Bahdanau) scores of one query: e[s] = v[A] . tanh(qp[A] + kp[s, :A]), s < S.
  void (*additive_scores)(const T* qp, const T* kp, const T* v, T* e, int64_t S, int64_t A);
  // Its backward: with z = tanh(qp + kp[s]), dz = de[s] * v * (1 - z^2):
  // dqp += sum_s dz, dkp[s] += dz, dv += sum_s de[s] * z.
  void (*additive_scores_backward)(const T* de, const T* qp, const T* kp, const T* v, T* dqp, T* dkp,
                                   T* dv, int64_t S, int64_t A);
  // row[S]: softmax over row[0:L) in place, row[L:S) = 0.
  void (*masked_softmax)(T* row, int64_t L, int64_t S);
  // de[S] = a * (da - sum_{s<L} a*da) on [0:L), 0 on [L:S).
  void (*masked_softmax_backward)(const T* a, const T* da, T* de, int64_t L, int64_t S);
  // row[n] = tanh(row + bias) (apply_tanh) or row + bias: a dense layer's epilogue.
  void (*bias_activation)(T* row, const T* bias, int64_t n, bool apply_tanh);
  // d_pre[n] = dy * (1 - y^2): the backward of y = tanh(pre).
  void (*tanh_backward)(const T* dy, const T* y, T* d_pre, int64_t n);
  // float32 weights in panels (the compiled decoder's float32 storage, runtime/matrix.h): panel p
  // holds weight rows [16p, 16p + 16) column by column, P[(p * K + k) * 16 + j] = W[16p + j, k]
  // (rows past N zero). Y[m, n] = sum_k W[n, k] X[m, k] + beta * Y[m, n] for n < N, m < M, beta 0
  // (never reads Y) or 1; X and Y rows ldx and ldy apart. Each Y[m, n] is summed in one lane, k in
  // increasing order, in blocks of 64 columns (each block's sum from zero, then the block sums in
  // order): the same bits whatever M, and however the caller splits the rows into whole panels.
  // Panels are read as one stream each, once for up to 6 inputs (AVX2 and up).
  void (*gemm_panels)(const float* P, int64_t K, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N,
                      int64_t M, float beta);
  // bfloat16 weights (the compiled decoder's bf16 storage, runtime/matrix.h), any M:
  // Y[m, n] = sum_k W[n, k] X[m, k] + beta * Y[m, n] for n < N, m < M (beta == 0 never reads Y).
  // W holds bf16 bits, rows ldw apart; X and Y rows are ldx and ldy apart. On the avx512_bf16 path
  // the products are native (vdpbf16ps): X is rounded to bf16 (nearest even; float32 subnormals
  // become 0, and subnormal partial sums are flushed: those instructions ignore MXCSR) and summed in
  // float32; elsewhere W is widened to float32 and multiplied by X as it is. Each weight is read
  // from memory once for up to 16 inputs (native) or all M (widened); results depend neither on M
  // nor on the caller's split of the rows in blocks of 8.
  void (*gemm_bf16)(const uint16_t* W, int64_t ldw, const float* X, int64_t ldx, float* Y, int64_t ldy,
                    int64_t N, int64_t K, int64_t M, float beta);
  // int8 (the compiled decoder's int8 storage, runtime/matrix.h); Kp is a padded row length, a
  // multiple of 64. Activations by the int8 rule (runtime/quantize.h), row by row: scales[m] =
  // max_k |X[m, k]| / 127, Q[m, :K] = round_half_even(X[m, :K] / scales[m]) (zeros for a zero row),
  // Q[m, K:Kp] = 0; X rows ldx apart (finite values), Q rows ldq. The same bits on every path.
  void (*quantize_rows_i8)(const float* X, int64_t ldx, int8_t* Q, int64_t ldq, float* scales, int64_t M,
                           int64_t K, int64_t Kp);
  // C[m, n] = sum_{k < Kp} W[n, k] Q[m, k], exact in int32, for n < N and any M (each weight row read
  // once for all M). W rows ldw apart, w_row_sum[n] = sum_k W[n, k]; Q rows ldq apart, C rows ldc;
  // values in [-127, 127], Kp <= 65536 (so the VNNI path's shifted sums fit in int32).
  void (*gemm_i8)(const int8_t* W, int64_t ldw, const int32_t* w_row_sum, const int8_t* Q, int64_t ldq, int32_t* C,
                  int64_t ldc, int64_t N, int64_t Kp, int64_t M);
};

// avx512_vnni adds AVX-512 VNNI (int8 dot products: Cascade Lake, Ice Lake); avx512_bf16 adds VNNI and
// AVX512_BF16 (bfloat16 dot products: Cooper Lake, Sapphire Rapids, Zen 4 and later).
enum class KernelPath { portable = 0, avx2 = 1, avx512 = 2, avx512_vnni = 3, avx512_bf16 = 4 };

// The table of the active path (atomic read; set once at start-up, changeable by set_kernel_path).
template <class T>
const KernelTable<T>& kernels();
// The table of one given path (the path must be supported by this CPU and build).
template <class T>
const KernelTable<T>& kernels_for(KernelPath path);

namespace portable {
const KernelTable<float>& table_f32();
const KernelTable<double>& table_f64();
}  // namespace portable
namespace avx2 {
const KernelTable<float>& table_f32();
const KernelTable<double>& table_f64();
}  // namespace avx2
namespace avx512 {
const KernelTable<float>& table_f32();
const KernelTable<double>& table_f64();
}  // namespace avx512
namespace avx512_vnni {
const KernelTable<float>& table_f32();
const KernelTable<double>& table_f64();
}  // namespace avx512_vnni
namespace avx512_bf16 {
const KernelTable<float>& table_f32();
const KernelTable<double>& table_f64();
}  // namespace avx512_bf16

}  // namespace s2s
