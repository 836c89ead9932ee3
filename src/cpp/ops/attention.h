// Attention: scores, a softmax masked by source lengths, and the weighted sum of source states.
//
// Letters: B batch, T decoder steps (1 for one decoder step), S source positions, H hidden size,
// A attention size (concat), S_max rows of the location weight.
//
//   kind         score(q_t, hs_s)                  params
//   dot          q_t . hs_s                        -
//   scaled_dot   q_t . hs_s / sqrt(H)              -
//   general      q_t . (W_a hs_s) = (q_t W_a) . hs_s      W_a [H,H]
//   concat       v . tanh(W_q q_t + W_k hs_s)      W_q [A,H], W_k [A,H], v [A]
//                (+ b_q inside the tanh with the optional query bias b_q [A])
//   location     (W_a q_t)_s                       W_a [S_max,H], S <= S_max
//
//   a[b,t,:] = softmax(score[b,t,:L_b]) padded with zeros to S       L_b = lengths[b] (>= 1) or S
//   c[b,t,:] = sum_s a[b,t,s] hs[b,s,:]
//
// general projects the query (q W_a: T*H^2 work) rather than the keys (S*H^2); a decoder that keeps
// keys across steps precomputes them itself. concat projects both once per call (query_proj [B,T,A],
// key_proj [B,S,A]) and its backward recomputes the tanh rather than storing B*T*S*A values.
#pragma once
#include <cstdint>

namespace s2s {

enum class ScoreKind { dot, scaled_dot, general, concat, location };

struct AttentionShape {
  int64_t B, T, S, H;
  int64_t A;      // concat's attention size (0 otherwise)
  int64_t S_max;  // location's rows (0 otherwise)
};

// Parameters of a kind; the pointers a kind does not use are null.
template <class T>
struct AttentionParams {
  const T* w_a = nullptr;  // general [H,H], location [S_max,H]
  const T* w_q = nullptr;  // concat [A,H]
  const T* w_k = nullptr;  // concat [A,H]
  const T* v = nullptr;    // concat [A]
  const T* b_q = nullptr;  // concat's optional query bias [A] (null: none)
};
template <class T>
struct AttentionParamGrads {
  T* w_a = nullptr;
  T* w_q = nullptr;
  T* w_k = nullptr;
  T* v = nullptr;
  T* b_q = nullptr;  // written when params.b_q is set
};

// Sizes of the saved projections a kind needs (elements); 0 if it needs none.
int64_t attention_query_proj_size(ScoreKind kind, const AttentionShape& shape);
int64_t attention_key_proj_size(ScoreKind kind, const AttentionShape& shape);

// out:   a [B,T,S]
// saved: query_proj (general [B,T,H], concat [B,T,A]), key_proj (concat [B,S,A])
// in:    hs [B,S,H], q [B,T,H], params, lengths [B] or nullptr
template <class T>
void attention_weight_forward(T* a, T* query_proj, T* key_proj, const T* hs, const T* q,
                              ScoreKind kind, const AttentionParams<T>& params, const int64_t* lengths,
                              const AttentionShape& shape);

// out: dhs [B,S,H], dq [B,T,H], dparams (like params)
// in:  da [B,T,S], and the forward's a, query_proj, key_proj, hs, q, params, lengths
template <class T>
void attention_weight_backward(T* dhs, T* dq, const AttentionParamGrads<T>& dparams, const T* da,
                               const T* a, const T* query_proj, const T* key_proj, const T* hs,
                               const T* q, ScoreKind kind, const AttentionParams<T>& params,
                               const int64_t* lengths, const AttentionShape& shape);

// out: c [B,T,H];  in: hs [B,S,H], a [B,T,S]
template <class T>
void weight_sum_forward(T* c, const T* hs, const T* a, int64_t B, int64_t T_steps, int64_t S, int64_t H);

// out: dhs [B,S,H], da [B,T,S];  in: dc [B,T,H], hs [B,S,H], a [B,T,S]
template <class T>
void weight_sum_backward(T* dhs, T* da, const T* dc, const T* hs, const T* a, int64_t B,
                         int64_t T_steps, int64_t S, int64_t H);

// ---- inference: one decoder step at a time over sources whose keys are projected once ----------
// The scores, softmax and weight sum are those of the functions above (one code path): dot kinds
// summed in float64; general dots q with keys W_a hs_s (the same score as (q W_a) . hs_s, S*H work
// per step instead of H^2); concat adds b_q to the query as the training forward does.

// Elements of the keys a kind keeps per input: general [B,S,H], concat [B,S,A], others 0.
int64_t attention_keys_size(ScoreKind kind, int64_t B, int64_t S, int64_t H, int64_t A);

// out: keys (general: hs @ W_a^T; concat: hs @ W_k^T);  in: hs [B,S,H], params
void attention_keys_inference(float* keys, const float* hs, ScoreKind kind, const AttentionParams<float>& params,
                              int64_t B, int64_t S, int64_t H, int64_t A);

// T_q queries per source (the beams of one input share its source: their scores are one block of
// queries against its keys, their contexts one [T_q,S] x [S,H] product).
// out:     a [B,T_q,S], c [B,T_q,H] = sum_s a[b,t,s] hs[b,s]
// scratch: query_proj [B,T_q,A] (concat)
// in:      hs [B,S,H], keys (attention_keys_inference), q [B,T_q,H], params, lengths [B] or nullptr
void attention_step_inference(float* a, float* c, float* query_proj, const float* hs, const float* keys,
                              const float* q, ScoreKind kind, const AttentionParams<float>& params,
                              const int64_t* lengths, int64_t B, int64_t T_q, int64_t S, int64_t H, int64_t A);

}  // namespace s2s
