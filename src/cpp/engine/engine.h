// The compiled decoder: a trained Seq2Seq (docs/model.md) prepared once for decoding, then the
// encoder and the whole greedy or beam decode run in C++: Engine = weights prepared once
// (weights.h) + the model's decoder step (seq2seq_step.h) + the one search (search.h).
//
// Letters: B inputs, S source positions, T steps taken, K beam size.
//
// An Engine is immutable after construction: any number of threads may decode with one at once,
// each call using its own buffers. A decode flushes denormals to zero (its pool jobs too).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/search.h"
#include "runtime/matrix.h"
#include "spec/model_spec.h"

namespace s2s {

struct EngineWeights;  // weights.h

class Engine {
 public:
  // Checks the configuration (check_model_config), every parameter's presence and shape
  // (parameter_shapes), then that no pre-activation, score or logit of decoding can overflow
  // float32 (range_check.h): std::invalid_argument naming what is wrong.
  Engine(const ModelConfig& config, const std::map<std::string, Tensor>& params,
         WeightType weights = WeightType::float32);
  ~Engine();
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;

  const ModelConfig& config() const;
  WeightType weight_type() const;

  // Greedy decoding (options.beam_size and n_best are ignored). src [B,S] token ids, lengths [B]
  // (1..S; nullptr: all S). serial: run on the calling thread only.
  // Returns the rows in input order.
  GreedyResult greedy(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S, const SearchOptions& options,
                      bool serial = false) const;

  // Beam search, the beams of all inputs as one batch of B*K rows. Returns per input (in input
  // order) up to n_best hypotheses, best first.
  std::vector<std::vector<Hypothesis>> beam(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S,
                                            const SearchOptions& options, bool serial = false) const;

  // Every option of the one search: beam_size 1 decodes greedily (or samples), one hypothesis
  // per input (score and log_prob computed, return_scores implied); beam_size > 1 is beam().
  // Per input (in input order) the hypotheses, best first.
  std::vector<std::vector<Hypothesis>> generate(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S,
                                                const SearchOptions& options, bool serial = false) const;

 private:
  std::unique_ptr<EngineWeights> w_;
};

}  // namespace s2s
