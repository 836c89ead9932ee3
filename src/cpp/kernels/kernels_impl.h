// The fused kernels, written once as plain loops and compiled once per instruction set.
// No include guard: kernels_<target>.cpp defines S2S_TARGET (portable, avx2, avx512) and includes
// this file, so each target gets its own namespace and its own copy of every function.
//
// Letters: H hidden size, G = 4H gates (i, f, g, o slices, PyTorch's order), S source positions,
// A attention size, N rows, K columns.
//
// Vectorisation: every elementwise loop is `#pragma omp simd` (built with -fopenmp-simd: no OpenMP
// runtime) and its math (exp, tanh) is branch-free inline code, so the compiler emits SSE2/NEON,
// AVX2+FMA or AVX-512 code for the same source. Reductions under `omp simd` are reassociated,
// so paths may differ from each other in the last bits; the tests bound that.
//
// Only our own inline code lives here, all in an anonymous namespace: a std:: template instantiated
// in this file would be a weak symbol compiled for this target, and the linker could hand it to the
// portable path (an illegal instruction on an older CPU).
#ifndef S2S_TARGET
#error "define S2S_TARGET before including kernels_impl.h"
#endif

#include <cstdint>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/kernels.h"
#include "runtime/quantize.h"

namespace s2s {
namespace S2S_TARGET {
namespace {

// ---- elementwise math ---------------------------------------------------------------------------

inline float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t bits_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// c ? a : b by bit masks. gcc 12 turns a chain of float ternaries into branches when vectorising
// for AVX2 (without AVX-512's masks: "control flow in loop"), which left the gate, tanh and softmax
// loops scalar on AVX2 machines; the same choice by masks has no control flow, and gives the same
// bits as the ternary (NaN included: the comparison is false either way).
inline float select_bits(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return float_from_bits((bits_from_float(a) & m) | (bits_from_float(b) & ~m));
}

// exp for float32, relative error about 1 ulp (Cephes' expf scheme): x = n ln2 + r with |r| <= ln2/2,
// exp(r) by a degree-6 polynomial, 2^n built in the exponent bits. Clamped to [-87, 88] so 2^n stays a
// normal float; NaN fails both comparisons and comes out NaN. Rounding x*log2(e) to an integer uses
// the 1.5*2^23 trick, which needs no float->int conversion (and so has no undefined behaviour).
inline float exp_approx(float x) {
  x = select_bits(x < -87.0f, -87.0f, x);
  x = select_bits(x > 88.0f, 88.0f, x);
  const float round_magic = 12582912.0f;  // 1.5 * 2^23
  const float k = x * 1.44269504088896341f + round_magic;
  const float n = k - round_magic;
  const uint32_t n_int = bits_from_float(k) - bits_from_float(round_magic);
  float r = x - n * 0.693359375f;  // ln2 split in two for an exact first product
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  return p * float_from_bits((n_int + 127u) << 23);
}

// tanh for float32: an odd polynomial below |x| = 0.625 (Cephes' tanhf), where 1 - 2/(e^2x + 1)
// would lose relative precision, and that formula above. Both are computed and one selected, so the
// loop stays branch-free.
inline float tanh_approx(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float big = 1.0f - 2.0f / (exp_approx(2.0f * ax) + 1.0f);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = x + x * z * p;
  return select_bits(ax < 0.625f, small, select_bits(x < 0.0f, -big, big));
}

// float64 is the checking precision: libm, correctly rounded or nearly, not vectorised.
inline float exp_(float x) { return exp_approx(x); }
inline double exp_(double x) { return __builtin_exp(x); }
inline float tanh_(float x) { return tanh_approx(x); }
inline double tanh_(double x) { return __builtin_tanh(x); }
template <class T>
inline T sigmoid_(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// ---- LSTM gates ---------------------------------------------------------------------------------

template <class T>
void lstm_gates_forward(T* gates, const T* bias, const T* c_prev, T* c_new, T* h_new, int64_t n,
                        int64_t gate_stride) {
  T* gate_i = gates;
  T* gate_f = gates + gate_stride;
  T* gate_g = gates + 2 * gate_stride;
  T* gate_o = gates + 3 * gate_stride;
  const T* bias_i = bias;
  const T* bias_f = bias + gate_stride;
  const T* bias_g = bias + 2 * gate_stride;
  const T* bias_o = bias + 3 * gate_stride;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T i = sigmoid_(gate_i[j] + bias_i[j]), f = sigmoid_(gate_f[j] + bias_f[j]);
    const T g = tanh_(gate_g[j] + bias_g[j]), o = sigmoid_(gate_o[j] + bias_o[j]);
    const T c = f * c_prev[j] + i * g;
    gate_i[j] = i;
    gate_f[j] = f;
    gate_g[j] = g;
    gate_o[j] = o;
    c_new[j] = c;
    h_new[j] = o * tanh_(c);
  }
}

template <class T>
void lstm_gates_backward(T* dgates, T* dc, const T* dh, const T* gates, const T* c_prev,
                         const T* c_new, T* db_sum, int64_t H) {
  const T* gate_i = gates;
  const T* gate_f = gates + H;
  const T* gate_g = gates + 2 * H;
  const T* gate_o = gates + 3 * H;
  T* dgate_i = dgates;
  T* dgate_f = dgates + H;
  T* dgate_g = dgates + 2 * H;
  T* dgate_o = dgates + 3 * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T i = gate_i[j], f = gate_f[j], g = gate_g[j], o = gate_o[j];
    const T tanh_c = tanh_(c_new[j]);
    // forward: h = o * tanh(c), so dL/dc gains dh * o * (1 - tanh(c)^2) on top of what later steps sent
    const T dc_total = dc[j] + dh[j] * o * (T(1) - tanh_c * tanh_c);
    // forward: c = f * c_prev + i * g, gates through sigmoid' = s(1-s) and tanh' = 1 - t^2
    dgate_i[j] = dc_total * g * i * (T(1) - i);
    dgate_f[j] = dc_total * c_prev[j] * f * (T(1) - f);
    dgate_g[j] = dc_total * i * (T(1) - g * g);
    dgate_o[j] = dh[j] * tanh_c * o * (T(1) - o);
    dc[j] = dc_total * f;
  }
  if (db_sum) {
#pragma omp simd
    for (int64_t j = 0; j < 4 * H; ++j) db_sum[j] += dgates[j];
  }
}

// ---- batch-1 products ---------------------------------------------------------------------------

template <class T>
inline void store_scaled(T* y, T acc, T alpha, T beta) {
  *y = beta == T(0) ? alpha * acc : alpha * acc + beta * *y;
}

// The plain GEMV: each row's dot product is summed in 16 interleaved partial sums (a fixed order
// on every target, vectorised as the target allows), then the partials pairwise; each partial
// sees K/16 terms, which keeps the float32 rounding error near a blocked BLAS's.
constexpr int64_t kPartials = 16;

template <class T>
T dot_16_partials(const T* w, const T* x, int64_t K) {
  T part[kPartials] = {};
  int64_t k = 0;
  for (; k + kPartials <= K; k += kPartials)
#pragma omp simd
    for (int64_t j = 0; j < kPartials; ++j) part[j] += w[k + j] * x[k + j];
  for (int64_t j = 0; k + j < K; ++j) part[j] += w[k + j] * x[k + j];
  for (int64_t width = kPartials / 2; width > 0; width /= 2)
    for (int64_t j = 0; j < width; ++j) part[j] += part[j + width];
  return part[0];
}

// sum_{i < n} term(i) in 8 interleaved partial sums (lane i mod 8, in increasing i), then the
// partials pairwise: the same order on every target and wherever the arrays lie. (An `omp simd
// reduction` lets the compiler peel iterations until a pointer is aligned, so its sums depended
// on the addresses of the buffers, and a result changed from one run to the next.) term may also
// store (the softmax keeps its exponentials); it is called once per i.
template <class T, class Term>
inline T sum_8_partials(int64_t n, Term term) {
  T part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
#pragma omp simd
    for (int64_t j = 0; j < 8; ++j) part[j] += term(i + j);
  for (int64_t j = 0; i + j < n; ++j) part[j] += term(i + j);
  for (int64_t width = 4; width > 0; width /= 2)
    for (int64_t j = 0; j < width; ++j) part[j] += part[j + width];
  return part[0];
}

template <class T>
void gemv(const T* W, int64_t ldw, const T* x, T* y, int64_t N, int64_t K, T alpha, T beta) {
  for (int64_t n = 0; n < N; ++n) store_scaled(y + n, dot_16_partials(W + n * ldw, x, K), alpha, beta);
}

// float32 GEMV with explicit SIMD where the target has it: eight rows at a time, x loaded once per
// column block, and the eight row sums reduced together by a hadd tree (the horizontal reduction
// costs about as much as the loads when each row's sum is reduced on its own). 256-bit vectors on
// the AVX-512 path too: eight 512-bit row streams read from L2 more slowly than eight 256-bit ones.
#if defined(__AVX2__) && defined(__FMA__)
inline __m256 hsum8_rows(__m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 r4, __m256 r5, __m256 r6,
                         __m256 r7) {
  // returns (sum r0, sum r1, ..., sum r7)
  const __m256 s01 = _mm256_hadd_ps(r0, r1), s23 = _mm256_hadd_ps(r2, r3);
  const __m256 s45 = _mm256_hadd_ps(r4, r5), s67 = _mm256_hadd_ps(r6, r7);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                       _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

constexpr int64_t kLanes = 8;
using VecF = __m256;
inline VecF vzero() { return _mm256_setzero_ps(); }
inline VecF vload(const float* p) { return _mm256_loadu_ps(p); }
inline VecF vload_tail(const float* p, int64_t n) {
  alignas(32) static constexpr int32_t kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_maskload_ps(p, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - n)));
}
inline VecF vfma(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a, b, c); }

// Eight rows of gemv<float> below whose starts lie m floats (0 < m < 8) past a 32-byte boundary,
// with K a multiple of 8 and at least 8 (vector 0 and the last one must differ): every row load is aligned, and the sums come out bit for bit as from the
// unaligned loads. Vector j holds columns 8j - m + l in lane l, so each lane still sums one residue
// class of columns (mod 8) in increasing order; the 64-column blocks of the two-level sum are
// folded lane by lane (a lane's block starts at another vector than its neighbours'), masked
// lanes at both ends are left untouched, and the totals are rotated back before the final sum.
// Without this path, rows that are not 32-byte aligned (numpy's default alignment is 16 bytes)
// split a cache line on every other load, which slows the batch-1 LSTM cell.
// p - m floats, computed on the address: vector 0's masked loads start before the arrays, and
// pointer arithmetic may not leave an array.
inline const float* floats_before(const float* p, int64_t m) {
  return reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(p) - sizeof(float) * static_cast<uintptr_t>(m));
}

inline __m256 gemv_rows8_shifted(const float* w, int64_t ldw, const float* x, int64_t K, int64_t m) {
  const int64_t vectors = K / 8 + 1;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i shift = _mm256_set1_epi32(static_cast<int>(m));
  // lanes holding a real column: l >= m in vector 0, l < m in the last one
  const __m256i first_valid = _mm256_cmpgt_epi32(lane, _mm256_sub_epi32(shift, _mm256_set1_epi32(1)));
  const __m256i last_valid = _mm256_cmpgt_epi32(shift, lane);
  VecF acc[8] = {vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()};
  VecF total[8] = {vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()};
  // Lanes l < m hold columns of the unaligned version's vector j - 1, the others of its vector j.
  // A lane whose unaligned vector is a multiple of 8 (not 0) starts a new 64-column block: its sum
  // so far is folded first, as the unaligned loop folds every lane after 8 vectors. That happens
  // at vectors j = 8b (lanes l >= m) and j = 8b + 1 (lanes l < m), b >= 1.
  const __m256 fold_high = _mm256_castsi256_ps(first_valid), fold_low = _mm256_castsi256_ps(last_valid);
  auto fold = [&](__m256 lanes) {
    for (int r = 0; r < 8; ++r) {
      total[r] = _mm256_blendv_ps(total[r], _mm256_add_ps(total[r], acc[r]), lanes);
      acc[r] = _mm256_blendv_ps(acc[r], vzero(), lanes);
    }
  };
  // the first and last vectors: only their valid lanes change
  auto masked_vector = [&](int64_t j, __m256i valid) {
    const __m256 keep = _mm256_castsi256_ps(valid);
    const VecF xk = _mm256_maskload_ps(floats_before(x + 8 * j, m), valid);
    for (int r = 0; r < 8; ++r) {
      const VecF wk = _mm256_maskload_ps(floats_before(w + r * ldw + 8 * j, m), valid);  // aligned
      acc[r] = _mm256_blendv_ps(acc[r], vfma(wk, xk, acc[r]), keep);
    }
  };
  masked_vector(0, first_valid);
  int64_t j = 1;
  while (j < vectors - 1) {
    if (j >= 8 && j % 8 == 0) fold(fold_high);
    if (j >= 9 && j % 8 == 1) fold(fold_low);
    // up to the next vector that folds, or the last one
    int64_t end = (j % 8 == 0 ? j + 1 : (j / 8 + 1) * 8);
    if (end > vectors - 1) end = vectors - 1;
    if (end == j) end = j + 1;
    for (; j < end; ++j) {
      const VecF xk = vload(x + 8 * j - m);
      for (int r = 0; r < 8; ++r) acc[r] = vfma(_mm256_load_ps(w + r * ldw + 8 * j - m), xk, acc[r]);  // aligned
    }
  }
  if (vectors - 1 >= 8 && (vectors - 1) % 8 == 0) fold(fold_high);
  if (vectors - 1 >= 9 && (vectors - 1) % 8 == 1) fold(fold_low);
  masked_vector(vectors - 1, last_valid);
  // lane l of the totals holds columns = l - m (mod 8); the unaligned version keeps them in lane
  // (l - m) mod 8
  const __m256i back = _mm256_and_si256(_mm256_add_epi32(lane, shift), _mm256_set1_epi32(7));
  // (the unaligned loop folds its last block and then adds its emptied sum: + 0, kept for -0)
  for (int r = 0; r < 8; ++r)
    total[r] = _mm256_permutevar8x32_ps(_mm256_add_ps(_mm256_add_ps(total[r], acc[r]), vzero()), back);
  return hsum8_rows(total[0], total[1], total[2], total[3], total[4], total[5], total[6], total[7]);
}

// Weight rows as dot_tile reads them (Bf16Rows below widens bf16 ones): 8 columns as float32
// (load), or the last n < 8 (load_tail, zeros after them).
struct FloatRows {
  const float* w;
  int64_t ldw;
  FloatRows at(int64_t n) const { return FloatRows{w + n * ldw, ldw}; }
  VecF load(int64_t r, int64_t k) const { return vload(w + r * ldw + k); }
  VecF load_tail(int64_t r, int64_t k, int64_t n) const { return vload_tail(w + r * ldw + k, n); }
};

// The 8 sums of NR weight rows times MR input rows (NR * MR == 8), lane p = m * NR + r holding
// row r . input m (inputs ldx apart). Every pair is summed the same way whatever the tile: each of
// its 8 lanes sums one residue class of columns (mod 8) in increasing order, in two levels for
// accuracy (acc takes at most 8 terms per lane, 64 columns, then is folded into total, so no lane
// sums K/8 terms in one running float), and hsum8_rows adds the lanes pairwise. So a result depends
// neither on the tile it was computed in nor on the other rows: gemv<float> is the 8 x 1 tile.
template <int NR, int MR, class Rows>
inline __m256 dot_tile(const Rows& w, const float* x, int64_t ldx, int64_t K) {
  static_assert(NR * MR == 8, "a tile is 8 (row, input) pairs");
  VecF acc[8] = {vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()};
  VecF total[8] = {vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()};
  int64_t k = 0;
  while (k + kLanes <= K) {
    const int64_t block_end = k + 8 * kLanes <= K ? k + 8 * kLanes : K - (K - k) % kLanes;
    for (; k < block_end; k += kLanes) {
      VecF wk[NR];
      for (int r = 0; r < NR; ++r) wk[r] = w.load(r, k);
      for (int m = 0; m < MR; ++m) {
        const VecF xk = vload(x + m * ldx + k);
        for (int r = 0; r < NR; ++r) acc[m * NR + r] = vfma(wk[r], xk, acc[m * NR + r]);
      }
    }
    for (int p = 0; p < 8; ++p) {
      total[p] = _mm256_add_ps(total[p], acc[p]);
      acc[p] = vzero();
    }
  }
  if (k < K) {
    VecF wk[NR];
    for (int r = 0; r < NR; ++r) wk[r] = w.load_tail(r, k, K - k);
    for (int m = 0; m < MR; ++m) {
      const VecF xk = vload_tail(x + m * ldx + k, K - k);
      for (int r = 0; r < NR; ++r) acc[m * NR + r] = vfma(wk[r], xk, acc[m * NR + r]);
    }
  }
  // (without a tail this adds the emptied sums, + 0, which turns -0 into +0 as it always has)
  for (int p = 0; p < 8; ++p) total[p] = _mm256_add_ps(total[p], acc[p]);
  return hsum8_rows(total[0], total[1], total[2], total[3], total[4], total[5], total[6], total[7]);
}

template <>
void gemv<float>(const float* W, int64_t ldw, const float* x, float* y, int64_t N, int64_t K, float alpha,
                 float beta) {
  // The columns are grouped into lanes from column 0 whatever the addresses, so a result never
  // depends on where the arrays happen to lie (a run that reloads its weights computes the same
  // bits). Row loads are aligned when W is 32-byte aligned and ldw a multiple of 8, which is how
  // Seq2Seq allocates its parameters; a load that splits a cache line costs more bandwidth, so
  // rows that start elsewhere take gemv_rows8_shifted when K allows.
  const int64_t shift = static_cast<int64_t>(reinterpret_cast<uintptr_t>(W) % 32) / 4;
  const bool shifted = shift != 0 && reinterpret_cast<uintptr_t>(W) % 4 == 0 && ldw % 8 == 0 && K % 8 == 0 && K >= 8;
  int64_t n = 0;
  for (; shifted && n + 8 <= N; n += 8) {
    __m256 out = _mm256_mul_ps(gemv_rows8_shifted(W + n * ldw, ldw, x, K, shift), _mm256_set1_ps(alpha));
    if (beta != 0.0f) out = _mm256_fmadd_ps(_mm256_loadu_ps(y + n), _mm256_set1_ps(beta), out);
    _mm256_storeu_ps(y + n, out);
  }
  for (; n + 8 <= N; n += 8) {
    const __m256 sums = dot_tile<8, 1>(FloatRows{W + n * ldw, ldw}, x, 0, K);
    __m256 out = _mm256_mul_ps(sums, _mm256_set1_ps(alpha));
    if (beta != 0.0f) out = _mm256_fmadd_ps(_mm256_loadu_ps(y + n), _mm256_set1_ps(beta), out);
    _mm256_storeu_ps(y + n, out);
  }
  for (; n < N; ++n) store_scaled(y + n, dot_16_partials(W + n * ldw, x, K), alpha, beta);  // last rows
}

#endif

// ---- many-row products (a beam, a small batch) ---------------------------------------------------

// Y[m, :N] = W[N, K] X[m, :K] + beta * Y[m, :N] for m < M (beta == 0 never reads Y): the GEMV for
// M inputs at once. Weight rows go 8 at a time and all M inputs pass over each block of 8 while it
// is in L1, so the weights are read from memory once per call whatever M. Each result is gemv's
// for that input alone (the same sums, whichever block or tile computes it), so it depends neither
// on M nor on how callers split the rows between threads (in blocks of 8).
template <class T>
void gemv_batch(const T* W, int64_t ldw, const T* X, int64_t ldx, T* Y, int64_t ldy, int64_t N, int64_t K,
                int64_t M, T beta) {
  for (int64_t n0 = 0; n0 < N; n0 += 8) {
    const int64_t n1 = n0 + 8 < N ? n0 + 8 : N;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = n0; n < n1; ++n)
        store_scaled(Y + m * ldy + n, dot_16_partials(W + n * ldw, X + m * ldx, K), T(1), beta);
  }
}

#if defined(__AVX2__) && defined(__FMA__)
inline void store_sums8(float* y, __m256 sums, float beta) {
  if (beta != 0.0f) sums = _mm256_fmadd_ps(_mm256_loadu_ps(y), _mm256_set1_ps(beta), sums);
  _mm256_storeu_ps(y, sums);
}
inline void store_sums4(float* y, __m128 sums, float beta) {
  if (beta != 0.0f) sums = _mm_fmadd_ps(_mm_loadu_ps(y), _mm_set1_ps(beta), sums);
  _mm_storeu_ps(y, sums);
}

// The register-blocked loop of gemv_batch over whole blocks of 8 weight rows (rows.at(n): the rows
// from n on, in any storage dot_tile reads): the first input as the 8 x 1 tile, then two inputs at
// a time as two 4 x 2 tiles (4 weight loads and 2 input loads per 8 FMAs, where the 8 x 1 tile
// needs 9), a last one left over as the 8 x 1 tile. Returns the rows done (N rounded down to 8);
// the caller does the rest.
template <class Rows>
int64_t gemv_batch_blocks(const Rows& rows, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N,
                          int64_t K, int64_t M, float beta) {
  if (M <= 0) return N;
  int64_t n = 0;
  for (; n + 8 <= N; n += 8) {
    // the first input alone: its 8 x 1 tile streams all 8 rows from memory at once (a 4 x 2 tile
    // streams 4), then the block is in L1 for the others
    store_sums8(Y + n, dot_tile<8, 1>(rows.at(n), X, 0, K), beta);
    int64_t m = 1;
    for (; m + 2 <= M; m += 2) {
      const float* x = X + m * ldx;
      for (int64_t half = 0; half < 8; half += 4) {
        // lanes 0-3: input m, lanes 4-7: input m + 1 (weight rows n + half .. n + half + 3)
        const __m256 sums = dot_tile<4, 2>(rows.at(n + half), x, ldx, K);
        store_sums4(Y + m * ldy + n + half, _mm256_castps256_ps128(sums), beta);
        store_sums4(Y + (m + 1) * ldy + n + half, _mm256_extractf128_ps(sums, 1), beta);
      }
    }
    if (m < M) store_sums8(Y + m * ldy + n, dot_tile<8, 1>(rows.at(n), X + m * ldx, 0, K), beta);
  }
  return n;
}

template <>
void gemv_batch<float>(const float* W, int64_t ldw, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N,
                       int64_t K, int64_t M, float beta) {
  const int64_t done = gemv_batch_blocks(FloatRows{W, ldw}, X, ldx, Y, ldy, N, K, M, beta);
  for (int64_t m = 0; m < M; ++m)  // the last rows, as gemv's
    for (int64_t n = done; n < N; ++n)
      store_scaled(Y + m * ldy + n, dot_16_partials(W + n * ldw, X + m * ldx, K), 1.0f, beta);
}
#endif


// ---- attention rows -----------------------------------------------------------------------------

// Dot scores as register tiles: NQ queries by NK keys, each score a float64 vector of
// kF64Lanes partial sums (the target's widest float64 register: GCC/Clang vector extensions make
// the same source SSE2/NEON, AVX2 or AVX-512 code). A key is loaded (and widened) once per NQ
// queries and a query once per NK keys; the tile's NQ*NK accumulators, NK keys and a query fill
// the target's 32 (AVX-512) or 16 registers. Each score's lanes are added in one fixed tree, then
// the last H % kF64Lanes terms in order.
#if defined(__AVX512F__)
#define S2S_F64_LANES 8
constexpr int kTileQueries = 4;
constexpr int kTileKeys = 4;
#elif defined(__AVX__)
#define S2S_F64_LANES 4
constexpr int kTileQueries = 3;
constexpr int kTileKeys = 3;
#else
#define S2S_F64_LANES 2
constexpr int kTileQueries = 3;
constexpr int kTileKeys = 3;
#endif
typedef double F64Vec __attribute__((vector_size(S2S_F64_LANES * sizeof(double))));
typedef float F32Half __attribute__((vector_size(S2S_F64_LANES * sizeof(float))));
constexpr int64_t kF64Lanes = S2S_F64_LANES;
#undef S2S_F64_LANES

inline F64Vec load_f64(const double* p) {
  F64Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline F64Vec load_f64(const float* p) {
  F32Half v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, F64Vec);
}

inline double lane_sum(const F64Vec& v) {
  double x[kF64Lanes];
  std::memcpy(x, &v, sizeof v);
  for (int64_t width = kF64Lanes / 2; width >= 1; width /= 2)  // pairwise: lane i += lane i + width
    for (int64_t i = 0; i < width; ++i) x[i] += x[i + width];
  return x[0];
}

template <int NQ, int NK, class T>
inline void dot_scores_tile(const T* keys, int64_t ldk, const double* queries, int64_t ldq, T* e, int64_t lde,
                            int64_t H, double scale) {
  F64Vec acc[NQ][NK];
  for (int i = 0; i < NQ; ++i)
    for (int j = 0; j < NK; ++j) acc[i][j] = F64Vec{};
  const int64_t H_vec = H - H % kF64Lanes;
  for (int64_t h = 0; h < H_vec; h += kF64Lanes) {
    F64Vec key[NK];
    for (int j = 0; j < NK; ++j) key[j] = load_f64(keys + j * ldk + h);
    for (int i = 0; i < NQ; ++i) {
      const F64Vec q = load_f64(queries + i * ldq + h);
      for (int j = 0; j < NK; ++j) acc[i][j] += q * key[j];
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int j = 0; j < NK; ++j) {
      double sum = lane_sum(acc[i][j]);
      for (int64_t h = H_vec; h < H; ++h) sum += static_cast<double>(keys[j * ldk + h]) * queries[i * ldq + h];
      e[i * lde + j] = static_cast<T>(sum * scale);
    }
}

// The keys of one block of NQ queries: tiles of kTileKeys keys, then the last keys one tile.
template <int NQ, class T>
inline void dot_scores_query_block(const T* keys, int64_t ldk, const double* queries, int64_t ldq, T* e,
                                   int64_t lde, int64_t S, int64_t H, double scale) {
  int64_t s = 0;
  for (; s + kTileKeys <= S; s += kTileKeys)
    dot_scores_tile<NQ, kTileKeys>(keys + s * ldk, ldk, queries, ldq, e + s, lde, H, scale);
  switch (S - s) {
    case 0: break;
    case 1: dot_scores_tile<NQ, 1>(keys + s * ldk, ldk, queries, ldq, e + s, lde, H, scale); break;
    case 2: dot_scores_tile<NQ, 2>(keys + s * ldk, ldk, queries, ldq, e + s, lde, H, scale); break;
    default: dot_scores_tile<NQ, 3>(keys + s * ldk, ldk, queries, ldq, e + s, lde, H, scale); break;
  }
}

// The queries as float64 rows: float ones widened into out [n_q, H] (ldq becomes H), double ones as given.
inline const double* queries_f64(const float* queries, int64_t& ldq, int64_t n_q, int64_t H, double* out) {
  for (int64_t t = 0; t < n_q; ++t) {
    const float* q_t = queries + t * ldq;
    double* out_t = out + t * H;
#pragma omp simd
    for (int64_t h = 0; h < H; ++h) out_t[h] = static_cast<double>(q_t[h]);
  }
  ldq = H;
  return out;
}
inline const double* queries_f64(const double* queries, int64_t&, int64_t, int64_t, double*) { return queries; }

template <class T>
void dot_scores(const T* keys, int64_t ldk, const T* queries_in, int64_t ldq, T* e, int64_t lde, int64_t n_q,
                int64_t S, int64_t H, double scale, double* query_f64) {
  static_assert(kTileQueries <= 4 && kTileKeys <= 4, "the remainder switches cover tiles up to 4");
  const double* queries = queries_f64(queries_in, ldq, n_q, H, query_f64);
  int64_t t = 0;
  for (; t + kTileQueries <= n_q; t += kTileQueries)
    dot_scores_query_block<kTileQueries>(keys, ldk, queries + t * ldq, ldq, e + t * lde, lde, S, H, scale);
  const double* q = queries + t * ldq;
  T* e_t = e + t * lde;
  switch (n_q - t) {
    case 0: break;
    case 1: dot_scores_query_block<1>(keys, ldk, q, ldq, e_t, lde, S, H, scale); break;
    case 2: dot_scores_query_block<2>(keys, ldk, q, ldq, e_t, lde, S, H, scale); break;
    default: dot_scores_query_block<3>(keys, ldk, q, ldq, e_t, lde, S, H, scale); break;
  }
}

template <class T>
void additive_scores(const T* qp, const T* kp, const T* v, T* e, int64_t S, int64_t A) {
  for (int64_t s = 0; s < S; ++s) {
    const T* kp_s = kp + s * A;
    e[s] = sum_8_partials<T>(A, [&](int64_t a) { return v[a] * tanh_(qp[a] + kp_s[a]); });
  }
}

template <class T>
void additive_scores_backward(const T* de, const T* qp, const T* kp, const T* v, T* dqp, T* dkp,
                              T* dv, int64_t S, int64_t A) {
  for (int64_t s = 0; s < S; ++s) {
    const T* kp_s = kp + s * A;
    T* dkp_s = dkp + s * A;
    const T de_s = de[s];
#pragma omp simd
    for (int64_t a = 0; a < A; ++a) {
      // forward: e_s = sum_a v_a * z_a with z = tanh(qp + kp_s)
      const T z = tanh_(qp[a] + kp_s[a]);
      const T dz = de_s * v[a] * (T(1) - z * z);
      dqp[a] += dz;
      dkp_s[a] += dz;
      dv[a] += de_s * z;
    }
  }
}

template <class T>
void masked_softmax(T* row, int64_t L, int64_t S) {
  T peak = row[0];
  for (int64_t s = 1; s < L; ++s) peak = row[s] > peak ? row[s] : peak;
  const T sum = sum_8_partials<T>(L, [&](int64_t s) { return row[s] = exp_(row[s] - peak); });
  const T inv_sum = T(1) / sum;
#pragma omp simd
  for (int64_t s = 0; s < L; ++s) row[s] *= inv_sum;
  for (int64_t s = L; s < S; ++s) row[s] = T(0);
}

template <class T>
void masked_softmax_backward(const T* a, const T* da, T* de, int64_t L, int64_t S) {
  // forward: a_s = exp(e_s) / sum_r exp(e_r), so de_s = a_s * (da_s - sum_r a_r da_r)
  const T a_dot_da = sum_8_partials<T>(L, [&](int64_t s) { return a[s] * da[s]; });
#pragma omp simd
  for (int64_t s = 0; s < L; ++s) de[s] = a[s] * (da[s] - a_dot_da);
  for (int64_t s = L; s < S; ++s) de[s] = T(0);
}

template <class T>
void bias_activation(T* row, const T* bias, int64_t n, bool apply_tanh) {
  if (apply_tanh) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) row[k] = tanh_(row[k] + bias[k]);
  } else {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) row[k] += bias[k];
  }
}

template <class T>
void tanh_backward(const T* dy, const T* y, T* d_pre, int64_t n) {
  // forward: y = tanh(pre), so d_pre = dy * (1 - y^2)
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) d_pre[k] = dy[k] * (T(1) - y[k] * y[k]);
}

// ---- float32 weights in panels -------------------------------------------------------------------

constexpr int64_t kPanel = 16;       // weight rows per panel (runtime/matrix.h's kPanelRows)
constexpr int64_t kPanelBlock = 64;  // columns summed from zero before joining a row's total
constexpr int64_t kPrefetch = 32;    // columns (cache lines) a panel's stream is prefetched ahead

// Y rows [0, M) of panel outputs [0, n) from the sums `total` [M][16]: the sums, or Y + them (beta 1).
inline void store_panel(const float* total, int64_t M, float* Y, int64_t ldy, int64_t n, float beta) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < n; ++j) {
      float* y = Y + m * ldy + j;
      *y = beta == 0.0f ? total[m * kPanel + j] : *y + total[m * kPanel + j];
    }
}

#if defined(__AVX2__) && defined(__FMA__)
// NP panels (consecutive, K * 16 floats apart) by MR inputs: 2 * NP * MR accumulators of 8 lanes
// (at most 12 of the 16 registers), each panel's two weight vectors loaded once per column for
// all MR inputs, the inputs broadcast. A block's sums join the totals in memory (totals [NP][MR][16]).
template <int NP, int MR>
inline void panel_tile(const float* P, int64_t K, const float* X, int64_t ldx, float* totals) {
  for (int64_t i = 0; i < NP * MR * kPanel; ++i) totals[i] = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kPanelBlock) {
    const int64_t k1 = k0 + kPanelBlock < K ? k0 + kPanelBlock : K;
    __m256 acc[NP][MR][2];
    for (int p = 0; p < NP; ++p)
      for (int m = 0; m < MR; ++m) acc[p][m][0] = acc[p][m][1] = _mm256_setzero_ps();
    for (int64_t k = k0; k < k1; ++k) {
      __m256 w[NP][2];
      for (int p = 0; p < NP; ++p) {
        // A column of a panel is one cache line: with 4 inputs or more (8 FMAs or more a line) ask
        // for the one kPrefetch columns ahead, so that memory keeps up while they compute. (With
        // fewer the loads are the bottleneck, and the extra uop slowed a batch-1 decode.)
        // (the address computed as an integer: near a panel's end it lies past the array, which a
        // prefetch may touch but pointer arithmetic may not reach)
        if (MR >= 4)
          _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(P) +
                                                     sizeof(float) * static_cast<uintptr_t>((p * K + k + kPrefetch) * kPanel)),
                       _MM_HINT_T0);
        w[p][0] = _mm256_load_ps(P + (p * K + k) * kPanel);
        w[p][1] = _mm256_load_ps(P + (p * K + k) * kPanel + 8);
      }
      for (int m = 0; m < MR; ++m) {
        const __m256 x = _mm256_broadcast_ss(X + m * ldx + k);
        for (int p = 0; p < NP; ++p) {
          acc[p][m][0] = _mm256_fmadd_ps(w[p][0], x, acc[p][m][0]);
          acc[p][m][1] = _mm256_fmadd_ps(w[p][1], x, acc[p][m][1]);
        }
      }
    }
    for (int p = 0; p < NP; ++p)
      for (int m = 0; m < MR; ++m)
        for (int h = 0; h < 2; ++h) {
          float* t = totals + (p * MR + m) * kPanel + 8 * h;
          _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), acc[p][m][h]));
        }
  }
}

// Panels [p0, p0 + NP) for inputs [m0, m0 + MR), stored (rows past N left alone).
template <int NP, int MR>
inline void panel_tile_store(const float* P, int64_t K, const float* X, int64_t ldx, float* Y, int64_t ldy,
                             int64_t N, int64_t p0, int64_t m0, float beta) {
  alignas(32) float totals[NP * MR * kPanel];
  panel_tile<NP, MR>(P + p0 * K * kPanel, K, X + m0 * ldx, ldx, totals);
  for (int p = 0; p < NP; ++p) {
    const int64_t n0 = (p0 + p) * kPanel;
    const float* t = totals + p * MR * kPanel;
    if (N - n0 < kPanel) {  // the last, partial panel
      store_panel(t, MR, Y + m0 * ldy + n0, ldy, N - n0, beta);
      continue;
    }
    for (int m = 0; m < MR; ++m)  // whole vectors: the same sums as store_panel's
      for (int h = 0; h < 2; ++h) {
        float* y = Y + (m0 + m) * ldy + n0 + 8 * h;
        const __m256 sums = _mm256_load_ps(t + m * kPanel + 8 * h);
        _mm256_storeu_ps(y, beta == 0.0f ? sums : _mm256_add_ps(_mm256_loadu_ps(y), sums));
      }
  }
}

// Inputs [m0, m0 + MR) over every panel: NP panels at a time where the tile has room for them
// (few inputs leave registers free; more accumulators hide the FMA latency), then one at a time.
template <int NP, int MR>
inline void panel_rows(const float* P, int64_t K, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N,
                       int64_t m0, float beta) {
  const int64_t panels = (N + kPanel - 1) / kPanel;
  int64_t p = 0;
  for (; p + NP <= panels; p += NP) panel_tile_store<NP, MR>(P, K, X, ldx, Y, ldy, N, p, m0, beta);
  for (; p < panels; ++p) panel_tile_store<1, MR>(P, K, X, ldx, Y, ldy, N, p, m0, beta);
}

void gemm_panels(const float* P, int64_t K, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N, int64_t M,
                 float beta) {
  switch (M) {  // up to 3 inputs: several panels at a time
    case 0: return;
    case 1: return panel_rows<4, 1>(P, K, X, ldx, Y, ldy, N, 0, beta);
    case 2: return panel_rows<3, 2>(P, K, X, ldx, Y, ldy, N, 0, beta);
    case 3: return panel_rows<2, 3>(P, K, X, ldx, Y, ldy, N, 0, beta);
    default: break;
  }
  // more: each panel (K * 16 floats, in L1 or L2) passes under every group of 6 inputs before the
  // next is read, so the weights come from memory once whatever M
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    int64_t m = 0;
    for (; m + 6 <= M; m += 6) panel_tile_store<1, 6>(P, K, X, ldx, Y, ldy, N, p, m, beta);
    switch (M - m) {
      case 5: panel_tile_store<1, 5>(P, K, X, ldx, Y, ldy, N, p, m, beta); break;
      case 4: panel_tile_store<1, 4>(P, K, X, ldx, Y, ldy, N, p, m, beta); break;
      case 3: panel_tile_store<1, 3>(P, K, X, ldx, Y, ldy, N, p, m, beta); break;
      case 2: panel_tile_store<1, 2>(P, K, X, ldx, Y, ldy, N, p, m, beta); break;
      case 1: panel_tile_store<1, 1>(P, K, X, ldx, Y, ldy, N, p, m, beta); break;
      default: break;
    }
  }
}
#else
// The plain loop, input by input: the same sums, lane by lane, as the tiles above.
void gemm_panels(const float* P, int64_t K, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N, int64_t M,
                 float beta) {
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    const float* panel = P + p * K * kPanel;
    for (int64_t m = 0; m < M; ++m) {
      const float* x = X + m * ldx;
      float total[kPanel] = {};
      for (int64_t k0 = 0; k0 < K; k0 += kPanelBlock) {
        const int64_t k1 = k0 + kPanelBlock < K ? k0 + kPanelBlock : K;
        float acc[kPanel] = {};
        for (int64_t k = k0; k < k1; ++k)
#pragma omp simd
          for (int64_t j = 0; j < kPanel; ++j) acc[j] += panel[k * kPanel + j] * x[k];
        for (int64_t j = 0; j < kPanel; ++j) total[j] += acc[j];
      }
      const int64_t n0 = p * kPanel;
      store_panel(total, 1, Y + m * ldy + n0, ldy, N - n0 < kPanel ? N - n0 : kPanel, beta);
    }
  }
}
#endif

// ---- bfloat16 weights ----------------------------------------------------------------------------
//
// Y[m, :N] = W[N, K] X[m, :K] + beta * Y[m, :N] for any M, W in bfloat16 bits. Where the CPU has
// AVX512_BF16 the products are native (vdpbf16ps): the inputs are rounded to bfloat16 too (nearest
// even), each product of two bfloat16 is exact in float32 and the sums are float32. Elsewhere each
// weight is widened to float32 and multiplied by the float32 input. Either way all M inputs pass
// over a block of weight rows while it is in cache, and a result depends neither on M nor on the
// caller's split of the rows into blocks of 8.

inline float bf16_to_float(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// The plain loop: a weight row widened once (in chunks that stay in L1), then its dot product with
// every input (dot_16_partials, chunk by chunk).
// ([[maybe_unused]]: the native path has no use for it)
[[maybe_unused]] void gemm_bf16_generic(const uint16_t* W, int64_t ldw, const float* X, int64_t ldx, float* Y,
                                        int64_t ldy, int64_t N, int64_t K, int64_t M, float beta) {
  constexpr int64_t kChunk = 512;
  alignas(64) float row[kChunk];
  for (int64_t n = 0; n < N; ++n) {
    const uint16_t* w = W + n * ldw;
    for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
      const int64_t kk = K - k0 < kChunk ? K - k0 : kChunk;
#pragma omp simd
      for (int64_t k = 0; k < kk; ++k) row[k] = bf16_to_float(w[k0 + k]);
      for (int64_t m = 0; m < M; ++m) {
        float* y = Y + m * ldy + n;
        const float s = dot_16_partials(row, X + m * ldx + k0, kk);
        *y = k0 > 0 ? *y + s : (beta != 0.0f ? s + beta * *y : s);
      }
    }
  }
}

#if defined(__AVX512BF16__)
// Native bfloat16 products. The inputs are converted once per call into a buffer on the stack
// (kDpInputs rows of kDpColumns, 32 KiB), zero-padded to whole vectors of 32; wider inputs go in
// column chunks whose sums are added into Y, more inputs in passes of kDpInputs (the weights are then
// read once per pass). Chunks and passes start at fixed columns and inputs, so every result is summed
// the same way whatever M and the caller's split of the rows.
constexpr int64_t kDpColumns = 1024;
constexpr int64_t kDpInputs = 16;

inline __m512bh dp_load(const uint16_t* p) {
  return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
}
// the first n < 32 columns, zeros after them (an odd weight beyond the row would meet an input 0,
// but a NaN or infinity there would still make NaN)
inline __m512bh dp_load_tail(const uint16_t* p, int64_t n) {
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(static_cast<__mmask32>((uint64_t(1) << n) - 1), p));
}
// 16 float32 lanes -> 8, high half onto low half
// (masked extracts: GCC 12 warns that the plain ones' undefined source may be used uninitialised)
inline __m256 fold16(__m512 v) {
  const __m256 zero = _mm256_setzero_ps();
  return _mm256_add_ps(_mm512_mask_extractf32x8_ps(zero, 0xff, v, 0), _mm512_mask_extractf32x8_ps(zero, 0xff, v, 1));
}

// As dot_tile: lane p = m * NR + r of the result holds weight row r . input m over K columns (xb:
// the converted inputs, ldxb apart, zero past K up to a multiple of 32). Each of a pair's 16 lanes
// sums columns 2l, 2l + 1 of every vector of 32 in order (vdpbf16ps), then fold16 and hsum8_rows.
template <int NR, int MR>
inline __m256 dp_tile(const uint16_t* w, int64_t ldw, const uint16_t* xb, int64_t ldxb, int64_t K) {
  static_assert(NR * MR == 8, "a tile is 8 (row, input) pairs");
  __m512 acc[8];
  for (int p = 0; p < 8; ++p) acc[p] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh wk[NR];
    for (int r = 0; r < NR; ++r) wk[r] = dp_load(w + r * ldw + k);
    for (int m = 0; m < MR; ++m) {
      const __m512bh xk = dp_load(xb + m * ldxb + k);
      for (int r = 0; r < NR; ++r) acc[m * NR + r] = _mm512_dpbf16_ps(acc[m * NR + r], wk[r], xk);
    }
  }
  if (k < K) {
    __m512bh wk[NR];
    for (int r = 0; r < NR; ++r) wk[r] = dp_load_tail(w + r * ldw + k, K - k);
    for (int m = 0; m < MR; ++m) {
      const __m512bh xk = dp_load(xb + m * ldxb + k);
      for (int r = 0; r < NR; ++r) acc[m * NR + r] = _mm512_dpbf16_ps(acc[m * NR + r], wk[r], xk);
    }
  }
  return hsum8_rows(fold16(acc[0]), fold16(acc[1]), fold16(acc[2]), fold16(acc[3]), fold16(acc[4]),
                    fold16(acc[5]), fold16(acc[6]), fold16(acc[7]));
}

// One pair alone (the last N % 8 rows), summed as in dp_tile.
inline float dp_one(const uint16_t* w, const uint16_t* xb, int64_t K) {
  __m512 acc = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) acc = _mm512_dpbf16_ps(acc, dp_load(w + k), dp_load(xb + k));
  if (k < K) acc = _mm512_dpbf16_ps(acc, dp_load_tail(w + k, K - k), dp_load(xb + k));
  const __m256 h = fold16(acc);
  return _mm256_cvtss_f32(hsum8_rows(h, h, h, h, h, h, h, h));
}

void gemm_bf16(const uint16_t* W, int64_t ldw, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N,
               int64_t K, int64_t M, float beta) {
  alignas(64) uint16_t xb[kDpInputs * kDpColumns];
  for (int64_t m0 = 0; m0 < M; m0 += kDpInputs) {
    const int64_t inputs = M - m0 < kDpInputs ? M - m0 : kDpInputs;
    for (int64_t k0 = 0; k0 < K; k0 += kDpColumns) {
      const int64_t kk = K - k0 < kDpColumns ? K - k0 : kDpColumns;
      // the inputs' columns [k0, k0 + kk) rounded to bf16 (vcvtne2ps2bf16: nearest even), zeros up
      // to the next multiple of 32
      for (int64_t m = 0; m < inputs; ++m) {
        const float* x = X + (m0 + m) * ldx + k0;
        for (int64_t k = 0; k < kk; k += 32) {
          const int64_t left = kk - k;  // columns left: lo in the first 16, hi in the next 16
          const int64_t lo = left < 16 ? left : 16, hi = left <= 16 ? 0 : (left < 32 ? left - 16 : 16);
          const __m512 x_lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << lo) - 1), x + k);
          const __m512 x_hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << hi) - 1), x + k + 16);
          _mm512_store_si512(xb + m * kDpColumns + k, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(x_hi, x_lo)));
        }
      }
      const float chunk_beta = k0 == 0 ? beta : 1.0f;  // later chunks add to the earlier ones' sums
      const uint16_t* Wk = W + k0;
      float* Ym = Y + m0 * ldy;
      int64_t n = 0;
      for (; n + 8 <= N; n += 8) {
        int64_t m = 0;
        for (; m + 2 <= inputs; m += 2) {
          for (int64_t half = 0; half < 8; half += 4) {
            const __m256 sums = dp_tile<4, 2>(Wk + (n + half) * ldw, ldw, xb + m * kDpColumns, kDpColumns, kk);
            store_sums4(Ym + m * ldy + n + half, _mm256_castps256_ps128(sums), chunk_beta);
            store_sums4(Ym + (m + 1) * ldy + n + half, _mm256_extractf128_ps(sums, 1), chunk_beta);
          }
        }
        if (m < inputs)
          store_sums8(Ym + m * ldy + n, dp_tile<8, 1>(Wk + n * ldw, ldw, xb + m * kDpColumns, 0, kk), chunk_beta);
      }
      for (int64_t m = 0; m < inputs; ++m)
        for (int64_t r = n; r < N; ++r) {
          float* y = Ym + m * ldy + r;
          const float s = dp_one(Wk + r * ldw, xb + m * kDpColumns, kk);
          *y = chunk_beta != 0.0f ? __builtin_fmaf(*y, chunk_beta, s) : s;
        }
    }
  }
}
#elif defined(__AVX2__) && defined(__FMA__)
// bf16 weight rows for dot_tile: 8 bf16 widened to 8 floats by a zero extension and a 16-bit shift.
inline __m256 widen_bf16(__m128i raw) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16)); }
struct Bf16Rows {
  const uint16_t* w;
  int64_t ldw;
  Bf16Rows at(int64_t n) const { return Bf16Rows{w + n * ldw, ldw}; }
  VecF load(int64_t r, int64_t k) const {
    return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * ldw + k)));
  }
  VecF load_tail(int64_t r, int64_t k, int64_t n) const {
    alignas(16) uint16_t part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; ++i) part[i] = w[r * ldw + k + i];
    return widen_bf16(_mm_load_si128(reinterpret_cast<const __m128i*>(part)));
  }
};

void gemm_bf16(const uint16_t* W, int64_t ldw, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N,
               int64_t K, int64_t M, float beta) {
  const int64_t done = gemv_batch_blocks(Bf16Rows{W, ldw}, X, ldx, Y, ldy, N, K, M, beta);
  if (done < N) gemm_bf16_generic(W + done * ldw, ldw, X, ldx, Y + done, ldy, N - done, K, M, beta);
}
#else
void gemm_bf16(const uint16_t* W, int64_t ldw, const float* X, int64_t ldx, float* Y, int64_t ldy, int64_t N,
               int64_t K, int64_t M, float beta) {
  gemm_bf16_generic(W, ldw, X, ldx, Y, ldy, N, K, M, beta);
}
#endif

// ---- int8 products (the compiled decoder's int8 storage, runtime/matrix.h) ----------------------
//
// Integer sums are exact, so every path gives the same bits: the SIMD code only changes how the
// same int32 sums are formed. Kp, the padded row length, is a multiple of 64 (kInt8RowAlign), so
// there are no column tails; weight rows left over by the register blocks take the plain loop.

// The int8 rule itself (runtime/quantize.h), row by row: the portable path and the reference the
// SIMD quantizers are held equal to.
[[maybe_unused]] void quantize_rows_i8_rule(const float* X, int64_t ldx, int8_t* Q, int64_t ldq, float* scales, int64_t M, int64_t K,
                           int64_t Kp) {
  for (int64_t m = 0; m < M; ++m) {
    scales[m] = int8_row_scale(X + m * ldx, K);
    quantize_int8_row(X + m * ldx, K, scales[m], Q + m * ldq);
    for (int64_t k = K; k < Kp; ++k) Q[m * ldq + k] = 0;
  }
}

void gemm_i8_generic(const int8_t* W, int64_t ldw, const int32_t*, const int8_t* Q, int64_t ldq, int32_t* C,
                     int64_t ldc, int64_t N, int64_t Kp, int64_t M) {
  for (int64_t n = 0; n < N; ++n) {
    const int8_t* w = W + n * ldw;
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* q = Q + m * ldq;
      int32_t s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < Kp; ++k) s += static_cast<int32_t>(w[k]) * static_cast<int32_t>(q[k]);
      C[m * ldc + n] = s;
    }
  }
}

#if defined(__AVX2__)
// The SIMD products, one template for every target: I (a target's traits) loads I::kStep columns
// of an activation row (as I::X) and of a weight row and adds their products into int32 lanes;
// sum4 reduces four accumulators to their four totals. A block is R weight rows times MB
// activation rows, all accumulators in registers, so each weight vector is loaded once for the
// MB rows.
//
// AVX2 and AVX-512BW: vpmaddubsw multiplies unsigned by signed bytes into int16 pair sums, so the
// activation goes in as |x| and the weight as w with x's sign (w * sign(x)): |x| * |w| <= 127^2
// and a pair sum <= 32258 fits int16 without saturation; vpmaddwd by ones widens the pairs to
// int32. Exact, like every path.

// AVX2: 32 columns a step.
struct I8Avx2 {
  using V = __m256i;
  struct X {
    V magnitude, sign;  // |x|, and x (whose sign vpsignb copies onto w; x = 0 gives 0)
  };
  static constexpr int64_t kStep = 32;
  static constexpr int kMaxRows = 2;  // 4 x 2 accumulators, 2 x 2 activation vectors, a weight, ones
  static constexpr bool kUnsignedX = false;
  static V zero() { return _mm256_setzero_si256(); }
  static X load_x(const int8_t* p) {
    const V x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return {_mm256_abs_epi8(x), x};
  }
  static V load_w(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static V dot(V acc, const X& x, V w) {
    const V pairs = _mm256_maddubs_epi16(x.magnitude, _mm256_sign_epi8(w, x.sign));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  static __m128i sum4(V a0, V a1, V a2, V a3) {
    const V s01 = _mm256_hadd_epi32(a0, a1), s23 = _mm256_hadd_epi32(a2, a3);
    const V s = _mm256_hadd_epi32(s01, s23);  // per 128-bit half: the half-sums of a0..a3
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  }
};

#if defined(__AVX512BW__)
// The four totals of four 512-bit accumulators.
inline __m128i sum4_512(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  // halves: s01 = [a0.lo + a0.hi, a1.lo + a1.hi] (256-bit halves), likewise s23
  const __m512i s01 = _mm512_add_epi32(_mm512_shuffle_i64x2(a0, a1, 0x44), _mm512_shuffle_i64x2(a0, a1, 0xEE));
  const __m512i s23 = _mm512_add_epi32(_mm512_shuffle_i64x2(a2, a3, 0x44), _mm512_shuffle_i64x2(a2, a3, 0xEE));
  // quarters: quarter j of s holds four lanes of a_j
  __m512i s = _mm512_add_epi32(_mm512_shuffle_i64x2(s01, s23, 0x88), _mm512_shuffle_i64x2(s01, s23, 0xDD));
  s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));  // lanes (0+2, 1+3) of each quarter
  s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB));  // every lane: its quarter's total
  return _mm512_castsi512_si128(_mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), s));
}

// AVX-512BW: the AVX2 scheme at 512 bits (64 columns a step); AVX-512 has no vpsignb, so w is
// negated under the mask of x's negative bytes.
struct I8Avx512Bw {
  using V = __m512i;
  struct X {
    V magnitude;
    __mmask64 negative;
  };
  static constexpr int64_t kStep = 64;
  static constexpr int kMaxRows = 4;  // 4 x 4 accumulators of 32 registers
  static constexpr bool kUnsignedX = false;
  static V zero() { return _mm512_setzero_si512(); }
  static X load_x(const int8_t* p) {
    const V x = _mm512_loadu_si512(p);
    return {_mm512_abs_epi8(x), _mm512_movepi8_mask(x)};
  }
  static V load_w(const int8_t* p) { return _mm512_loadu_si512(p); }
  static V dot(V acc, const X& x, V w) {
    const V signed_w = _mm512_mask_sub_epi8(w, x.negative, _mm512_setzero_si512(), w);
    const V pairs = _mm512_maddubs_epi16(x.magnitude, signed_w);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
  }
  static __m128i sum4(V a0, V a1, V a2, V a3) { return sum4_512(a0, a1, a2, a3); }
};
#endif

#if defined(__AVX512VNNI__)
// VNNI: vpdpbusd multiplies unsigned by signed bytes, four products a lane, so the activations
// go in shifted to x + 128 in [1, 255] (a flip of the sign bit) and 128 * sum_k W[n, k] comes off
// the totals.
struct I8Vnni {
  using V = __m512i;
  using X = __m512i;
  static constexpr int64_t kStep = 64;
  static constexpr int kMaxRows = 4;
  static constexpr bool kUnsignedX = true;
  static V zero() { return _mm512_setzero_si512(); }
  static X load_x(const int8_t* p) { return _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_set1_epi8(-128)); }
  static V load_w(const int8_t* p) { return _mm512_loadu_si512(p); }
  static V dot(V acc, X x, V w) { return _mm512_dpbusd_epi32(acc, x, w); }
  static __m128i sum4(V a0, V a1, V a2, V a3) { return sum4_512(a0, a1, a2, a3); }
};
#endif

// prefetch: the block's first pass over its weight rows, which come from memory; the next block's
// rows are fetched meanwhile (the hardware prefetchers keep fewer streams going while the
// activation rows are multiplied in).
template <class I, int R, int MB>
inline void gemm_i8_block(const int8_t* W, int64_t ldw, const int32_t* w_row_sum, const int8_t* Q, int64_t ldq,
                          int32_t* C, int64_t ldc, int64_t Kp, bool prefetch) {
  typename I::V acc[MB][R];
#pragma GCC unroll 16
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[m][r] = I::zero();
  for (int64_t k = 0; k < Kp; k += I::kStep) {
    typename I::X x[MB];
#pragma GCC unroll 16
    for (int m = 0; m < MB; ++m) x[m] = I::load_x(Q + m * ldq + k);
    if (prefetch) {
      // (addresses past the matrix's end are only prefetched, never read: computed as integers)
      const uintptr_t next = reinterpret_cast<uintptr_t>(W + k) + static_cast<uintptr_t>(R * ldw);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(next + static_cast<uintptr_t>(r * ldw)), _MM_HINT_T0);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const typename I::V w = I::load_w(W + r * ldw + k);
#pragma GCC unroll 16
      for (int m = 0; m < MB; ++m) acc[m][r] = I::dot(acc[m][r], x[m], w);
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 16
    for (int r = 0; r < R; r += 4) {
      __m128i s = I::sum4(acc[m][r], acc[m][r + 1], acc[m][r + 2], acc[m][r + 3]);
      if (I::kUnsignedX)
        s = _mm_sub_epi32(s, _mm_slli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w_row_sum + r)), 7));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(C + m * ldc + r), s);
    }
}

// Four weight rows against MB = 1..kMaxRows activation rows.
template <class I, int MB>
void gemm_i8_rows4(const int8_t* W, int64_t ldw, const int32_t* w_row_sum, const int8_t* Q, int64_t ldq, int32_t* C,
                   int64_t ldc, int64_t Kp, int64_t M, bool prefetch) {
  if constexpr (MB > 1) {
    if (M < MB) return gemm_i8_rows4<I, MB - 1>(W, ldw, w_row_sum, Q, ldq, C, ldc, Kp, M, prefetch);
  }
  gemm_i8_block<I, 4, MB>(W, ldw, w_row_sum, Q, ldq, C, ldc, Kp, prefetch);
}

template <class I>
void gemm_i8_simd(const int8_t* W, int64_t ldw, const int32_t* w_row_sum, const int8_t* Q, int64_t ldq, int32_t* C,
                  int64_t ldc, int64_t N, int64_t Kp, int64_t M) {
  int64_t n = 0;
  if (M == 1)  // one activation row: eight weight rows in flight
    for (; n + 8 <= N; n += 8) gemm_i8_block<I, 8, 1>(W + n * ldw, ldw, w_row_sum + n, Q, ldq, C + n, ldc, Kp, true);
  // four weight rows at a time (they stay in L1) against blocks of up to kMaxRows activation rows
  for (; n + 4 <= N; n += 4)
    for (int64_t m = 0; m < M; m += I::kMaxRows) {
      const int64_t rows = M - m < I::kMaxRows ? M - m : I::kMaxRows;
      gemm_i8_rows4<I, I::kMaxRows>(W + n * ldw, ldw, w_row_sum + n, Q + m * ldq, ldq, C + m * ldc + n, ldc, Kp, rows,
                                    m == 0);
    }
  if (n < N) gemm_i8_generic(W + n * ldw, ldw, w_row_sum + n, Q, ldq, C + n, ldc, N - n, Kp, M);
}

// The int8 rule at eight (or sixteen) floats a step. The same operations as quantize_int8_row:
// max |x| (exact), scale = max / 127 (one division), x / scale (IEEE division), rounding half to
// even, the clamp; so the same bits.
#if defined(__AVX512F__)
void quantize_rows_i8(const float* X, int64_t ldx, int8_t* Q, int64_t ldq, float* scales, int64_t M, int64_t K,
                      int64_t Kp) {
  for (int64_t m = 0; m < M; ++m) {
    const float* x = X + m * ldx;
    int8_t* q = Q + m * ldq;
    __m512 peak = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
      const __mmask16 live = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1);
      peak = _mm512_max_ps(peak, _mm512_abs_ps(_mm512_maskz_loadu_ps(live, x + k)));
    }
    const float scale = _mm512_reduce_max_ps(peak) / 127.0f;
    scales[m] = scale;
    if (scale == 0.0f) {
      for (int64_t k = 0; k < Kp; ++k) q[k] = 0;
      continue;
    }
    const __m512 s = _mm512_set1_ps(scale), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    for (int64_t k = 0; k < Kp; k += 16) {
      const __mmask16 live = k >= K ? __mmask16(0) : K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1);
      __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(live, x + k), s),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_max_ps(_mm512_min_ps(v, hi), lo);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
  }
}
#else
void quantize_rows_i8(const float* X, int64_t ldx, int8_t* Q, int64_t ldq, float* scales, int64_t M, int64_t K,
                      int64_t Kp) {
  alignas(32) float tail[8];
  for (int64_t m = 0; m < M; ++m) {
    const float* x = X + m * ldx;
    int8_t* q = Q + m * ldq;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 peak = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) peak = _mm256_max_ps(peak, _mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask));
    float max_abs = 0.0f;
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, peak);
    for (int j = 0; j < 8; ++j) max_abs = lanes[j] > max_abs ? lanes[j] : max_abs;
    for (; k < K; ++k) {
      const float a = x[k] < 0.0f ? -x[k] : x[k];
      max_abs = a > max_abs ? a : max_abs;
    }
    const float scale = max_abs / 127.0f;
    scales[m] = scale;
    if (scale == 0.0f) {
      for (int64_t j = 0; j < Kp; ++j) q[j] = 0;
      continue;
    }
    const __m256 s = _mm256_set1_ps(scale), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    for (k = 0; k < Kp; k += 8) {
      const float* src = x + k;
      if (k + 8 > K) {  // the last columns and the padding: zeros quantize to zero
        for (int j = 0; j < 8; ++j) tail[j] = k + j < K ? x[k + j] : 0.0f;
        src = tail;
      }
      __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(src), s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm256_max_ps(_mm256_min_ps(v, hi), lo);
      const __m256i i32 = _mm256_cvtps_epi32(v);
      const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packs_epi16(i16, i16));
    }
  }
}
#endif

void gemm_i8(const int8_t* W, int64_t ldw, const int32_t* w_row_sum, const int8_t* Q, int64_t ldq, int32_t* C,
             int64_t ldc, int64_t N, int64_t Kp, int64_t M) {
#if defined(__AVX512VNNI__)
  gemm_i8_simd<I8Vnni>(W, ldw, w_row_sum, Q, ldq, C, ldc, N, Kp, M);
#elif defined(__AVX512BW__)
  gemm_i8_simd<I8Avx512Bw>(W, ldw, w_row_sum, Q, ldq, C, ldc, N, Kp, M);
#else
  gemm_i8_simd<I8Avx2>(W, ldw, w_row_sum, Q, ldq, C, ldc, N, Kp, M);
#endif
}
#else
void quantize_rows_i8(const float* X, int64_t ldx, int8_t* Q, int64_t ldq, float* scales, int64_t M, int64_t K,
                      int64_t Kp) {
  quantize_rows_i8_rule(X, ldx, Q, ldq, scales, M, K, Kp);
}
void gemm_i8(const int8_t* W, int64_t ldw, const int32_t* w_row_sum, const int8_t* Q, int64_t ldq, int32_t* C,
             int64_t ldc, int64_t N, int64_t Kp, int64_t M) {
  gemm_i8_generic(W, ldw, w_row_sum, Q, ldq, C, ldc, N, Kp, M);
}
#endif

template <class T>
KernelTable<T> make_table() {
  return KernelTable<T>{&lstm_gates_forward<T>, &lstm_gates_backward<T>, &gemv<T>,
                        &gemv_batch<T>,         &dot_scores<T>,         &additive_scores<T>,
                        &additive_scores_backward<T>, &masked_softmax<T>, &masked_softmax_backward<T>,
                        &bias_activation<T>,    &tanh_backward<T>,      &gemm_panels,          &gemm_bf16,
                        &quantize_rows_i8,      &gemm_i8};
}

}  // namespace

const KernelTable<float>& table_f32() {
  static const KernelTable<float> table = make_table<float>();
  return table;
}
const KernelTable<double>& table_f64() {
  static const KernelTable<double> table = make_table<double>();
  return table;
}

}  // namespace S2S_TARGET
}  // namespace s2s
