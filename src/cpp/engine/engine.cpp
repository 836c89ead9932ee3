// The compiled decoder (engine.h): inputs checked and sorted, the search run, results put back
// in input order.
#include "engine/engine.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "engine/range_check.h"
#include "engine/seq2seq_step.h"
#include "engine/weights.h"
#include "runtime/parallel.h"

namespace s2s {
namespace {

// Denormal results and inputs flushed to zero while a decode runs (a decoder's states decay
// towards zero; denormal arithmetic takes a slow path on x86). The caller's mode is restored.
class FlushDenormals {
 public:
#if defined(__SSE__) || defined(__x86_64__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

// The source of a decode: the one check of its values (the Python layer checks only types and
// ranks); the messages are those the model layer gave before it decoded through this engine.
void check_source(const ModelConfig& cfg, const int64_t* src, const int64_t* lengths, int64_t B, int64_t S) {
  if (B < 1 || S < 1) throw std::invalid_argument("src_ids must have shape [B, S] with B, S >= 1");
  const auto [id_min, id_max] = std::minmax_element(src, src + B * S);
  if (*id_min < 0 || *id_max >= cfg.src_vocab)
    throw std::invalid_argument("src_ids must lie in [0, " + std::to_string(cfg.src_vocab) +
                                ") (the source vocabulary); got min " + std::to_string(*id_min) + ", max " +
                                std::to_string(*id_max));
  const auto [len_min, len_max] = std::minmax_element(lengths, lengths + B);
  if (*len_min < 1 || *len_max > S)
    throw std::invalid_argument("lengths must lie in [1, S=" + std::to_string(S) + "]; got min " +
                                std::to_string(*len_min) + ", max " + std::to_string(*len_max));
  if (cfg.attention == AttentionKind::location && S > cfg.max_source_length)
    throw std::invalid_argument("src_ids has " + std::to_string(S) +
                                " steps; location attention accepts at most max_source_length=" +
                                std::to_string(cfg.max_source_length));
}

// Source rows sorted longest first (the LSTM skips finished rows), as the Python layer does.
struct Sorted {
  std::vector<int64_t> src, lengths, order;
};

Sorted sort_batch(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S) {
  Sorted s;
  std::vector<int64_t> full;
  if (!lengths) {
    full.assign(static_cast<size_t>(B), S);
    lengths = full.data();
  }
  s.order.resize(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) s.order[b] = b;
  std::stable_sort(s.order.begin(), s.order.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  s.src.resize(static_cast<size_t>(B * S));
  s.lengths.resize(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    std::memcpy(s.src.data() + i * S, src + s.order[i] * S, sizeof(int64_t) * S);
    s.lengths[i] = lengths[s.order[i]];
  }
  return s;
}

// rows * cols elements must be a size this process could hold (2^40), else invalid_argument.
void check_elements(const char* what, int64_t rows, int64_t cols) {
  int64_t n = 0;
  if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &n) || n > (int64_t(1) << 40))
    throw std::invalid_argument(std::string(what) + " would need " + std::to_string(rows) + " x " +
                                std::to_string(cols) + " elements, more than this decoder allows");
}

// The search's checks with this model's sizes, and coverage_penalty > 0 only with attention.
void check_options(const ModelConfig& cfg, const SearchOptions& options, int64_t B) {
  check_search_options(options, B, cfg.tgt_vocab);
  if (options.coverage_penalty > 0 && cfg.attention == AttentionKind::none)
    throw std::invalid_argument("coverage_penalty needs a model with attention; this one has none");
}

}  // namespace

Engine::Engine(const ModelConfig& cfg, const std::map<std::string, Tensor>& params, WeightType type)
    : w_(new EngineWeights()) {
  check_model_config(cfg);  // first: every size below is computed from cfg
  prepare_engine_weights(*w_, cfg, params, type);
  check_float32_range(cfg, params);  // after every parameter's presence and shape is checked
}

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
const ModelConfig& Engine::config() const { return w_->cfg; }
WeightType Engine::weight_type() const { return w_->type; }

GreedyResult Engine::greedy(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S,
                            const SearchOptions& options_in, bool serial) const {
  SearchOptions options = options_in;
  options.beam_size = options.n_best = 1;
  check_options(w_->cfg, options, B);
  check_elements("the batch", B, std::max(S, w_->cfg.tgt_vocab) * 4 * w_->cfg.hidden);
  std::unique_ptr<SerialScope> scope(serial ? new SerialScope() : nullptr);
  const FlushDenormals flush;
  const Sorted sorted = sort_batch(src, lengths, B, S);
  check_source(w_->cfg, sorted.src.data(), sorted.lengths.data(), B, S);
  Seq2SeqStep decoder(*w_, sorted.src.data(), sorted.lengths.data(), B, S, 1);
  const GreedyResult found = greedy_search(decoder, options, sorted.order.data());
  GreedyResult out;
  const int64_t T = out.steps = found.steps;
  out.tokens.resize(static_cast<size_t>(B * T));
  if (options.return_attention) out.attention.resize(static_cast<size_t>(B * T * S));
  out.token_scores.resize(found.token_scores.size());
  out.scores.resize(found.scores.size());
  out.log_probs.resize(found.log_probs.size());
  out.lengths.resize(found.lengths.size());
  for (int64_t i = 0; i < B; ++i) {
    const int64_t b = sorted.order[i];
    std::copy_n(found.tokens.begin() + i * T, T, out.tokens.begin() + b * T);
    if (options.return_attention)
      std::copy_n(found.attention.begin() + i * T * S, T * S, out.attention.begin() + b * T * S);
    if (!found.token_scores.empty())
      std::copy_n(found.token_scores.begin() + i * T, T, out.token_scores.begin() + b * T);
    if (!found.scores.empty()) {
      out.scores[b] = found.scores[i];
      out.log_probs[b] = found.log_probs[i];
      out.lengths[b] = found.lengths[i];
    }
  }
  return out;
}

std::vector<std::vector<Hypothesis>> Engine::beam(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S,
                                                  const SearchOptions& options, bool serial) const {
  check_options(w_->cfg, options, B);
  int64_t rows = 0;
  if (__builtin_mul_overflow(B, options.beam_size, &rows)) throw std::invalid_argument("B * beam_size is too large");
  // (nothing is sized by max_length: the history grows with the steps taken)
  check_elements("the beams", rows, std::max(S, w_->cfg.tgt_vocab) * 4 * w_->cfg.hidden);
  std::unique_ptr<SerialScope> scope(serial ? new SerialScope() : nullptr);
  const FlushDenormals flush;
  const Sorted sorted = sort_batch(src, lengths, B, S);
  check_source(w_->cfg, sorted.src.data(), sorted.lengths.data(), B, S);
  Seq2SeqStep decoder(*w_, sorted.src.data(), sorted.lengths.data(), B, S, options.beam_size);
  std::vector<std::vector<Hypothesis>> found = beam_search(decoder, B, options, sorted.order.data());
  std::vector<std::vector<Hypothesis>> result(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) result[sorted.order[i]] = std::move(found[i]);
  return result;
}

std::vector<std::vector<Hypothesis>> Engine::generate(const int64_t* src, const int64_t* lengths, int64_t B,
                                                      int64_t S, const SearchOptions& options_in, bool serial) const {
  if (options_in.beam_size != 1) return beam(src, lengths, B, S, options_in, serial);
  SearchOptions options = options_in;
  options.return_scores = true;
  const GreedyResult found = greedy(src, lengths, B, S, options, serial);
  const int64_t T = found.steps;
  std::vector<std::vector<Hypothesis>> result(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    Hypothesis h;
    const int64_t n = found.lengths[b];
    h.tokens.assign(found.tokens.begin() + b * T, found.tokens.begin() + b * T + n);
    h.score = found.scores[b];
    h.log_prob = found.log_probs[b];
    if (options.return_token_scores)
      h.token_scores.assign(found.token_scores.begin() + b * T, found.token_scores.begin() + b * T + n);
    if (options.return_attention)
      h.attention.assign(found.attention.begin() + b * T * S, found.attention.begin() + (b * T + n) * S);
    result[b].push_back(std::move(h));
  }
  return result;
}

}  // namespace s2s
