// Attention weight and weight sum, forward and backward; equations and shapes in attention.h.
// Letters: B batch, T decoder steps, S source positions, H hidden size, A attention size.
// Scores (float64 sums for the dot kinds, tanh for concat) and the masked softmax run in the SIMD
// kernels; the weighted sums and their gradients are one small BLAS product per batch row;
// projections shared by all rows (q W_a, W_q q, W_k hs) are single BLAS products. Threads take
// batch rows.
#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/blas.h"
#include "kernels/kernels.h"
#include "runtime/parallel.h"
#include "runtime/workspace.h"

namespace s2s {
namespace {

inline int64_t valid_length(const int64_t* lengths, int64_t n, int64_t S) {
  return lengths ? lengths[n] : S;
}

// Batch rows per thread so that a thread's share (multiply-adds per row: row_work) is worth its
// start, about 0.5 M multiply-adds.
int64_t min_batch_per_thread(int64_t row_work) {
  const int64_t rows = 500000 / (row_work > 0 ? row_work : 1);
  return rows < 1 ? 1 : rows + 1;
}

template <class T>
T score_scale(ScoreKind kind, int64_t H) {
  return kind == ScoreKind::scaled_dot && H > 0 ? T(1) / std::sqrt(T(H)) : T(1);  // H = 0: scores are 0
}


// The scores of T_steps queries per batch row and their masked softmax, a [B,T,S] out: the one
// place scores are computed, for training (all steps) and inference (one step).
//   dot kinds: a[n,t,s] = scale * query[n,t] . keys[n,s] (query [B,T,H], keys [B,S,H]), float64 sums
//   concat:    a[n,t,s] = v . tanh(query_proj[n,t] + keys[n,s]) (query_proj [B,T,A], keys [B,S,A])
//   location:  a holds the scores already
template <class T>
void score_rows(T* a, const T* query, const T* query_proj, const T* keys_hs, const T* key_proj, ScoreKind kind,
                const T* v, const int64_t* lengths, int64_t B, int64_t T_steps, int64_t S, int64_t H, int64_t A) {
  const KernelTable<T>& k = kernels<T>();
  const T scale = score_scale<T>(kind, H);
  const bool dot_kind = kind == ScoreKind::dot || kind == ScoreKind::scaled_dot || kind == ScoreKind::general;
  parallel_ranges(B, min_batch_per_thread(T_steps * S * (kind == ScoreKind::concat ? A : H)),
                  [&](int64_t n0, int64_t n1) {
    // the dot kinds sum in float64; float queries are widened into this scratch
    std::vector<double> query_f64(dot_kind && sizeof(T) < sizeof(double) ? T_steps * H : 0);
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t L = valid_length(lengths, n, S);
      T* a_n = a + n * T_steps * S;
      if (dot_kind)
        k.dot_scores(keys_hs + n * S * H, H, query + n * T_steps * H, H, a_n, S, T_steps, L, H, scale,
                     query_f64.data());
      for (int64_t t = 0; t < T_steps; ++t) {
        const int64_t nt = n * T_steps + t;
        if (kind == ScoreKind::concat)
          k.additive_scores(query_proj + nt * A, key_proj + n * S * A, v, a + nt * S, L, A);
        k.masked_softmax(a + nt * S, L, S);
      }
    }
  });
}

// query_proj [rows, A] = q [rows, H] @ W_q^T (+ b_q): concat's query projection
template <class T>
void concat_query_projection(T* query_proj, const T* q, const AttentionParams<T>& params, int64_t rows, int64_t H,
                             int64_t A) {
  T beta = T(0);
  if (params.b_q) {  // each row starts as b_q, the product is added to it
    for (int64_t r = 0; r < rows; ++r) std::copy(params.b_q, params.b_q + A, query_proj + r * A);
    beta = T(1);
  }
  gemm<T>(Trans::no, Trans::yes, rows, A, H, T(1), q, H, params.w_q, H, beta, query_proj, A);
}

}  // namespace

int64_t attention_query_proj_size(ScoreKind kind, const AttentionShape& s) {
  if (kind == ScoreKind::general) return s.B * s.T * s.H;
  if (kind == ScoreKind::concat) return s.B * s.T * s.A;
  return 0;
}

int64_t attention_key_proj_size(ScoreKind kind, const AttentionShape& s) {
  return kind == ScoreKind::concat ? s.B * s.S * s.A : 0;
}

template <class T>
void attention_weight_forward(T* a, T* query_proj, T* key_proj, const T* hs, const T* q,
                              ScoreKind kind, const AttentionParams<T>& params, const int64_t* lengths,
                              const AttentionShape& shape) {
  const int64_t B = shape.B, T_steps = shape.T, S = shape.S, H = shape.H, A = shape.A;
  switch (kind) {
    case ScoreKind::dot:
    case ScoreKind::scaled_dot:
      break;
    case ScoreKind::general:  // query_proj = q @ W_a
      gemm<T>(Trans::no, Trans::no, B * T_steps, H, H, T(1), q, H, params.w_a, H, T(0), query_proj, H);
      break;
    case ScoreKind::location:  // a = q @ W_a[:S]^T, softmaxed below
      gemm<T>(Trans::no, Trans::yes, B * T_steps, S, H, T(1), q, H, params.w_a, H, T(0), a, S);
      break;
    case ScoreKind::concat:  // query_proj = q @ W_q^T (+ b_q), key_proj = hs @ W_k^T
      concat_query_projection(query_proj, q, params, B * T_steps, H, A);
      gemm<T>(Trans::no, Trans::yes, B * S, A, H, T(1), hs, H, params.w_k, H, T(0), key_proj, A);
      break;
  }
  score_rows<T>(a, kind == ScoreKind::general ? query_proj : q, query_proj, hs, key_proj, kind, params.v, lengths,
                B, T_steps, S, H, A);
}

template <class T>
void attention_weight_backward(T* dhs, T* dq, const AttentionParamGrads<T>& dparams, const T* da,
                               const T* a, const T* query_proj, const T* key_proj, const T* hs,
                               const T* q, ScoreKind kind, const AttentionParams<T>& params,
                               const int64_t* lengths, const AttentionShape& shape) {
  const int64_t B = shape.B, T_steps = shape.T, S = shape.S, H = shape.H, A = shape.A;
  const KernelTable<T>& k = kernels<T>();
  // de = dL/dscore through the masked softmax
  T* de = scratch<T>(Scratch::attention_de, B * T_steps * S);
  parallel_ranges(B, min_batch_per_thread(4 * T_steps * S), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t L = valid_length(lengths, n, S);
      for (int64_t t = 0; t < T_steps; ++t) {
        const int64_t row = (n * T_steps + t) * S;
        k.masked_softmax_backward(a + row, da + row, de + row, L, S);
      }
    }
  });

  switch (kind) {
    case ScoreKind::dot:
    case ScoreKind::scaled_dot:
    case ScoreKind::general: {
      // forward: score[t,s] = scale * query[t] . hs[s] with query = q (dot) or q @ W_a (general)
      const T scale = score_scale<T>(kind, H);
      const T* query = kind == ScoreKind::general ? query_proj : q;
      T* dquery = kind == ScoreKind::general ? scratch<T>(Scratch::attention_dquery, B * T_steps * H) : dq;
      parallel_ranges(B, min_batch_per_thread(2 * T_steps * S * H), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
          const int64_t L = valid_length(lengths, n, S);
          const T* hs_n = hs + n * S * H;
          const T* de_n = de + n * T_steps * S;
          // dquery[t] = scale * sum_{s<L} de[t,s] hs[s]
          gemm<T>(Trans::no, Trans::no, T_steps, H, L, scale, de_n, S, hs_n, H, T(0),
                  dquery + n * T_steps * H, H);
          // dhs[s] = scale * sum_t de[t,s] query[t]  (de is 0 past L, so rows past L come out 0)
          gemm<T>(Trans::yes, Trans::no, S, H, T_steps, scale, de_n, S, query + n * T_steps * H, H,
                  T(0), dhs + n * S * H, H);
        }
      });
      if (kind == ScoreKind::general) {  // forward: query = q @ W_a
        gemm<T>(Trans::no, Trans::yes, B * T_steps, H, H, T(1), dquery, H, params.w_a, H, T(0), dq, H);
        gemm<T>(Trans::yes, Trans::no, H, H, B * T_steps, T(1), q, H, dquery, H, T(0), dparams.w_a, H);
      }
      break;
    }
    case ScoreKind::location: {
      // forward: score = q @ W_a[:S]^T; the scores do not depend on hs, rows S.. of W_a unused
      gemm<T>(Trans::no, Trans::no, B * T_steps, H, S, T(1), de, S, params.w_a, H, T(0), dq, H);
      gemm<T>(Trans::yes, Trans::no, S, H, B * T_steps, T(1), de, S, q, H, T(0), dparams.w_a, H);
      std::fill(dparams.w_a + S * H, dparams.w_a + shape.S_max * H, T(0));
      std::fill(dhs, dhs + B * S * H, T(0));
      break;
    }
    case ScoreKind::concat: {
      T* dquery_proj = scratch<T>(Scratch::attention_dquery, B * T_steps * A);
      T* dkey_proj = scratch<T>(Scratch::attention_dkey, B * S * A);
      std::fill(dquery_proj, dquery_proj + B * T_steps * A, T(0));
      std::fill(dkey_proj, dkey_proj + B * S * A, T(0));
      // dv is summed over fixed blocks of batch rows, then the blocks in order: the result is
      // the same whichever threads took which blocks.
      constexpr int64_t kRowsPerPartial = 8;
      const int64_t n_blocks = (B + kRowsPerPartial - 1) / kRowsPerPartial;
      std::vector<T> dv_blocks(n_blocks * A, T(0));
      parallel_ranges(n_blocks, min_batch_per_thread(kRowsPerPartial * T_steps * S * A),
                      [&](int64_t blk0, int64_t blk1) {
        for (int64_t blk = blk0; blk < blk1; ++blk) {
          const int64_t n_end = (blk + 1) * kRowsPerPartial < B ? (blk + 1) * kRowsPerPartial : B;
          for (int64_t n = blk * kRowsPerPartial; n < n_end; ++n) {
            const int64_t L = valid_length(lengths, n, S);
            for (int64_t t = 0; t < T_steps; ++t) {
              const int64_t nt = n * T_steps + t;
              k.additive_scores_backward(de + nt * S, query_proj + nt * A, key_proj + n * S * A,
                                         params.v, dquery_proj + nt * A, dkey_proj + n * S * A,
                                         dv_blocks.data() + blk * A, L, A);
            }
          }
        }
      });
      std::fill(dparams.v, dparams.v + A, T(0));
      for (int64_t blk = 0; blk < n_blocks; ++blk)
        for (int64_t j = 0; j < A; ++j) dparams.v[j] += dv_blocks[blk * A + j];
      if (params.b_q) {  // forward: query_proj = q @ W_q^T + b_q; rows summed in order
        std::fill(dparams.b_q, dparams.b_q + A, T(0));
        for (int64_t r = 0; r < B * T_steps; ++r)
          for (int64_t j = 0; j < A; ++j) dparams.b_q[j] += dquery_proj[r * A + j];
      }
      // forward: query_proj = q @ W_q^T (+ b_q), key_proj = hs @ W_k^T
      gemm<T>(Trans::no, Trans::no, B * T_steps, H, A, T(1), dquery_proj, A, params.w_q, H,
              T(0), dq, H);
      gemm<T>(Trans::yes, Trans::no, A, H, B * T_steps, T(1), dquery_proj, A, q, H, T(0),
              dparams.w_q, H);
      gemm<T>(Trans::no, Trans::no, B * S, H, A, T(1), dkey_proj, A, params.w_k, H, T(0), dhs, H);
      gemm<T>(Trans::yes, Trans::no, A, H, B * S, T(1), dkey_proj, A, hs, H, T(0), dparams.w_k, H);
      break;
    }
  }
}

template <class T>
void weight_sum_forward(T* c, const T* hs, const T* a, int64_t B, int64_t T_steps, int64_t S, int64_t H) {
  // Per batch row a [T,S] x [S,H] product; threads take batch rows.
  parallel_ranges(B, min_batch_per_thread(T_steps * S * H), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      gemm<T>(Trans::no, Trans::no, T_steps, H, S, T(1), a + n * T_steps * S, S, hs + n * S * H, H, T(0),
              c + n * T_steps * H, H);
  });
}

template <class T>
void weight_sum_backward(T* dhs, T* da, const T* dc, const T* hs, const T* a, int64_t B,
                         int64_t T_steps, int64_t S, int64_t H) {
  parallel_ranges(B, min_batch_per_thread(2 * T_steps * S * H), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* hs_n = hs + n * S * H;
      // forward: c[t] = sum_s a[t,s] hs[s], so da[t,s] = dc[t] . hs[s]
      gemm<T>(Trans::no, Trans::yes, T_steps, S, H, T(1), dc + n * T_steps * H, H, hs_n, H, T(0),
              da + n * T_steps * S, S);
      // dhs[s] = sum_t a[t,s] dc[t]
      gemm<T>(Trans::yes, Trans::no, S, H, T_steps, T(1), a + n * T_steps * S, S, dc + n * T_steps * H,
              H, T(0), dhs + n * S * H, H);
    }
  });
}

int64_t attention_keys_size(ScoreKind kind, int64_t B, int64_t S, int64_t H, int64_t A) {
  if (kind == ScoreKind::general) return B * S * H;
  if (kind == ScoreKind::concat) return B * S * A;
  return 0;
}

void attention_keys_inference(float* keys, const float* hs, ScoreKind kind, const AttentionParams<float>& params,
                              int64_t B, int64_t S, int64_t H, int64_t A) {
  if (kind == ScoreKind::general)  // keys = hs @ W_a^T: then q . keys[s] = (q W_a) . hs[s]
    gemm<float>(Trans::no, Trans::yes, B * S, H, H, 1.0f, hs, H, params.w_a, H, 0.0f, keys, H);
  else if (kind == ScoreKind::concat)  // the key projection of attention_weight_forward
    gemm<float>(Trans::no, Trans::yes, B * S, A, H, 1.0f, hs, H, params.w_k, H, 0.0f, keys, A);
}

void attention_step_inference(float* a, float* c, float* query_proj, const float* hs, const float* keys,
                              const float* q, ScoreKind kind, const AttentionParams<float>& params,
                              const int64_t* lengths, int64_t B, int64_t T_q, int64_t S, int64_t H, int64_t A) {
  switch (kind) {
    case ScoreKind::dot:
    case ScoreKind::scaled_dot:
      score_rows<float>(a, q, nullptr, hs, nullptr, kind, nullptr, lengths, B, T_q, S, H, A);
      break;
    case ScoreKind::general:
      score_rows<float>(a, q, nullptr, keys, nullptr, kind, nullptr, lengths, B, T_q, S, H, A);
      break;
    case ScoreKind::location:  // a = q @ W_a[:S]^T, softmaxed by score_rows
      gemm<float>(Trans::no, Trans::yes, B * T_q, S, H, 1.0f, q, H, params.w_a, H, 0.0f, a, S);
      score_rows<float>(a, nullptr, nullptr, nullptr, nullptr, kind, nullptr, lengths, B, T_q, S, H, A);
      break;
    case ScoreKind::concat:
      concat_query_projection(query_proj, q, params, B * T_q, H, A);
      score_rows<float>(a, nullptr, query_proj, nullptr, keys, kind, params.v, lengths, B, T_q, S, H, A);
      break;
  }
  weight_sum_forward<float>(c, hs, a, B, T_q, S, H);
}

#define S2S_INSTANTIATE_ATTENTION(T)                                                              \
  template void attention_weight_forward<T>(T*, T*, T*, const T*, const T*, ScoreKind,            \
                                            const AttentionParams<T>&, const int64_t*,            \
                                            const AttentionShape&);                               \
  template void attention_weight_backward<T>(T*, T*, const AttentionParamGrads<T>&, const T*,     \
                                             const T*, const T*, const T*, const T*, const T*,    \
                                             ScoreKind, const AttentionParams<T>&, const int64_t*, \
                                             const AttentionShape&);                              \
  template void weight_sum_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t); \
  template void weight_sum_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t,    \
                                       int64_t, int64_t);
S2S_INSTANTIATE_ATTENTION(float)
S2S_INSTANTIATE_ATTENTION(double)

}  // namespace s2s
