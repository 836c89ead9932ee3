// s2sext's public C++ API: load a model file written by s2sext.Seq2Seq.save (or `s2sext train`)
// and translate token ids or strings with greedy or beam search, without Python.
//
//   #include <s2sext.h>
//   s2sext::Translator t = s2sext::Translator::load("dates.s2s");      // or load(path, "bfloat16")
//   std::string iso = t.translate("september 27, 1994");                // greedy
//   std::string best = t.translate("september 27, 1994", /*beam=*/5);
//   std::vector<std::vector<int64_t>> ids = t.greedy({t.encode("2/10/93")});
//
// A Translator is immutable after load: any number of threads may translate with one at once.
// Errors (a missing, truncated, corrupted or foreign file; bad ids) throw std::runtime_error or
// std::invalid_argument with a message naming the problem. Documented in docs/cpp-api.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace s2s {
class Engine;
}

namespace s2sext {

struct Hypothesis {
  std::vector<int64_t> tokens;  // target ids, ending with <eos> (2) when finished
  double score;                 // log P / ((5 + |tokens|) / 6)^length_penalty (+ the coverage penalty)
  double log_prob;
  std::vector<double> token_scores;  // generate with return_token_scores: each token's log-probability
};

// Every option of the one search, as s2sext.Decoder.generate has them (docs/cpp-api.md):
// beam_size 1 decodes greedily or samples (sampling_topk != 1), beam_size > 1 is beam search
// (sampling refused). Checked by generate: std::invalid_argument naming the option.
struct GenerateOptions {
  int64_t beam_size = 1, max_length = 50, min_length = 0, n_best = 1;
  double length_penalty = 0.0;
  double coverage_penalty = 0.0;     // GNMT's beta: + beta * sum_s log(min(sum_t a_ts, 1)), needs attention
  int64_t no_repeat_ngram_size = 0;  // N > 0: no N-gram twice in a hypothesis
  std::vector<std::vector<int64_t>> target_prefix;  // per source its forced first ids (or none)
  double sampling_temperature = 1.0;
  int64_t sampling_topk = 1;         // 1: argmax, 0: the whole vocabulary
  double sampling_topp = 1.0;        // in (0, 1]
  uint64_t seed = 0;                 // std::mt19937_64 seeded with seed + the source's index
  bool return_token_scores = false;
};

class Translator {
 public:
  // dtype: "float32", "bfloat16" (LSTM, combine and output matrices stored as bfloat16) or "int8"
  // (every matrix by the int8 rule, per-row scales; the LSTM, combine and output products in int32).
  static Translator load(const std::string& path, const std::string& dtype = "float32");
  ~Translator();
  Translator(Translator&&) noexcept;
  Translator& operator=(Translator&&) noexcept;

  // Source text -> source ids, with the model's tokenizer and vocabulary (reversed when the model
  // was trained on reversed sources; unknown tokens -> <unk>; lowercased first, by the rule of
  // training, when the model lowercases its sources). Throws on an empty result. A
  // sentencepiece model's text needs a build with the sentencepiece library: without it encode,
  // decode and translate throw std::runtime_error naming it (greedy and beam on ids work).
  std::vector<int64_t> encode(const std::string& text) const;
  // Target ids -> text: stops at <eos>, drops <pad>/<sos>, joins with the model's tokenizer.
  std::string decode(const std::vector<int64_t>& ids) const;

  // Greedy decoding of a batch of sources of any lengths: per source the ids up to and including
  // <eos> (or max_length ids).
  std::vector<std::vector<int64_t>> greedy(const std::vector<std::vector<int64_t>>& sources,
                                           int64_t max_length = 50, int64_t min_length = 0) const;
  // Beam search: per source up to n_best hypotheses, best first.
  std::vector<std::vector<Hypothesis>> beam(const std::vector<std::vector<int64_t>>& sources,
                                            int64_t beam_size = 5, int64_t max_length = 50,
                                            int64_t min_length = 0, int64_t n_best = 1,
                                            double length_penalty = 0.0) const;

  // Every option (GenerateOptions): per source up to n_best hypotheses, best first.
  std::vector<std::vector<Hypothesis>> generate(const std::vector<std::vector<int64_t>>& sources,
                                                const GenerateOptions& options) const;

  // encode -> greedy (beam == 1) or beam search -> decode.
  std::string translate(const std::string& text, int64_t beam = 1, int64_t max_length = 50) const;
  // encode -> generate -> decode of the best hypothesis ("" when there is none).
  std::string translate(const std::string& text, const GenerateOptions& options) const;

 private:
  Translator();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace s2sext
