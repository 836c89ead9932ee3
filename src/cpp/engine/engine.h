// The inference engine: a trained Seq2Seq (docs/model.md) prepared once for decoding, then the
// encoder and greedy or beam decoding run entirely in C++.
//
// Letters: B inputs, S source positions, H hidden size, E embedding size, V target vocabulary,
// K beam size, G = 4H.
//
// Prepared at construction (per model): the decoder's first-layer input weights split into the
// embedding part and the rest, and when it is small enough (at most 16 MiB) the table
// E_proj [V, G] = tgt_embed @ W_ih[:, :E]^T + b, so that at batch 1 a step's input product is a row
// lookup; with WeightType::bfloat16 the LSTM (encoder and decoder), combine and output matrices
// stored as bfloat16 (float32 arithmetic). Prepared per call (per input): the attention keys
// (general: W_a hs_s; concat: W_k hs_s + b_q, the query bias folded into the keys). A decode flushes denormals to zero (its pool jobs too).
// An Engine is immutable after construction: any number of threads may decode with one at once,
// each call using its own buffers.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace s2s {

// The special tokens every vocabulary starts with (docs/model.md).
constexpr int64_t kPadId = 0, kSosId = 1, kEosId = 2, kUnkId = 3;

// The widest beam search (s2sext.decoding.MAX_BEAM_SIZE checks the same for the model layer).
constexpr int64_t kMaxBeamSize = 65536;

enum class EngineAttention { none, dot, scaled_dot, general, concat, location };

// The kind named as in a model's config ("none" for no attention); false if the name is unknown.
bool engine_attention_from_name(const std::string& name, EngineAttention* kind);

struct EngineConfig {
  int64_t src_vocab = 0, tgt_vocab = 0, embed = 0, hidden = 0, layers = 1;
  bool bidirectional = false;
  EngineAttention attention = EngineAttention::dot;
  bool bahdanau = false;       // attention style: false = Luong
  bool input_feeding = false;  // Luong only
  int64_t max_source_length = 0;
  // docs/model.md: bridge "concat" (bidirectional, even hidden: H/2 units per direction, the
  // decoder starts from [h_fwd; h_bwd] and attends over the concatenated outputs, no bridge.*),
  // combine_activation "tanh" or "none", concat's query bias attention.b_q.
  bool bridge_concat = false;
  bool combine_tanh = true;
  bool query_bias = false;
};

// A float32 parameter as stored in the model file: shape and row-major values.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// Weight storage of the compiled matrices.
enum class WeightType { float32, bfloat16 };

struct Hypothesis {
  std::vector<int64_t> tokens;  // ends with <eos> (id 2) when finished
  double score;                 // log_prob / ((5 + |tokens|) / 6)^alpha
  double log_prob;
};

struct EngineWeights;  // engine.cpp

// The configuration rules of docs/model-format.md ("The Seq2Seq header") that an EngineConfig can
// express: sizes >= 1 (vocabularies >= 5), the attention style's combinations, the version-2
// options' (bridge "concat": bidirectional, even hidden; combine "none": attention; query bias:
// concat), and every parameter's byte count below 2^63 in checked arithmetic (so that no size
// computed from the configuration overflows). Throws std::invalid_argument naming the first rule broken.
void check_engine_config(const EngineConfig& config);

class Engine {
 public:
  // Checks every parameter's presence and shape, then that no pre-activation, score or logit of
  // decoding can overflow float32 (bounded from the weights, the rule of
  // s2sext.decoding.check_float32_range): std::invalid_argument naming the parameter.
  Engine(const EngineConfig& config, const std::map<std::string, Tensor>& params,
         WeightType weights = WeightType::float32);
  ~Engine();
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;

  const EngineConfig& config() const;
  WeightType weight_type() const;

  // Greedy decoding. src [B,S] token ids, lengths [B] (1..S; nullptr: all S). Returns the tokens
  // [B, T] row-major, T = *steps the number of steps taken (the longest row, at most max_length):
  // each row's tokens up to and including <eos>, then <pad> (0). Its memory grows with the steps
  // taken, not with max_length. <eos> is not chosen before step min_length. serial: run on the
  // calling thread only.
  std::vector<int64_t> greedy(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S, int64_t max_length,
                              int64_t min_length, int64_t* steps, bool serial = false) const;

  // Beam search, the beams of all inputs as one batch of B*K rows; the same rules as
  // s2sext.decoding.beam_search. Returns per input up to n_best hypotheses, best first.
  std::vector<std::vector<Hypothesis>> beam(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S,
                                            int64_t beam_size, int64_t max_length, int64_t min_length,
                                            int64_t n_best, double length_penalty, bool serial = false) const;

 private:
  std::unique_ptr<EngineWeights> w_;
};

}  // namespace s2s
