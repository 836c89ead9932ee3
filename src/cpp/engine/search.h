// Greedy and beam search, written once against a decoder step: the search knows no model, only
// logits for the tokens it feeds and a state it may reorder (the shape of CTranslate2's
// decoding.h). Both feed each chosen token back, starting from <sos>, and stop a row at <eos>.
//
// Letters: R decoding rows (inputs, or inputs * K beams), V vocabulary, S source positions (the
// columns of a step's attention), K beam size, T steps taken.
#pragma once
#include <cstdint>
#include <vector>

namespace s2s {

// The widest beam search (s2sext.decoding.MAX_BEAM_SIZE checks the same in Python).
constexpr int64_t kMaxBeamSize = 65536;

class DecoderStep {
 public:
  virtual ~DecoderStep() = default;
  virtual int64_t rows() const = 0;           // R
  virtual int64_t vocabulary() const = 0;     // V
  virtual int64_t source_length() const = 0;  // S
  // logits [R,V] of the next token after `tokens` [R]; attention [R,S] of this step (zeros
  // without attention; nullptr: not wanted). Advances every row's state.
  virtual void step(const int64_t* tokens, float* logits, float* attention) = 0;
  // Row r's state becomes row parents[r]'s (beam search, after each step).
  virtual void reorder(const int64_t* parents) = 0;
};

// Brace-initialised in this order: {beam_size, max_length, min_length, n_best, length_penalty, return_attention}.
struct SearchOptions {
  int64_t beam_size = 1, max_length = 50, min_length = 0, n_best = 1;
  double length_penalty = 0.0;  // GNMT's alpha: score = log P / ((5 + |Y|) / 6)^alpha
  bool return_attention = false;
};

// std::invalid_argument unless 1 <= max_length, 0 <= min_length <= max_length,
// 1 <= n_best <= beam_size <= kMaxBeamSize and length_penalty >= 0.
void check_search_options(const SearchOptions& options);

// A greedy decode's rows (greedy_search: the decoder's row order; Engine::greedy: input order).
struct GreedyResult {
  int64_t steps = 0;              // T: the longest row (at most max_length)
  std::vector<int64_t> tokens;    // [R,T]: each row up to and including <eos>, then <pad>
  std::vector<float> attention;   // [R,T,S] when asked: the weights behind each token, 0 after <eos>
};

// Greedy decoding of the decoder's R rows: the argmax token per step (ties to the lower id, the
// first NaN wins as in numpy); <eos> is not chosen before step min_length. Memory grows with
// the steps taken, not with max_length.
GreedyResult greedy_search(DecoderStep& decoder, const SearchOptions& options);

struct Hypothesis {
  std::vector<int64_t> tokens;  // ends with <eos> when finished
  double score = 0;             // log_prob / ((5 + |tokens|) / 6)^alpha
  double log_prob = 0;
  std::vector<float> attention;  // [|tokens|, S] when asked: the weights behind each token
};

// Beam search of B inputs; the decoder's rows are the beams, row b*K + j beam j of input b, all
// starting from input b's state. Each step extends every live hypothesis by every token (log-
// softmax in float64) and keeps the K best of each input (ties to the lower candidate index); an
// extension ending in <eos> is finished. An input stops when it has n_best finished hypotheses
// and no live one can still beat them (a bound that holds for length_penalty >= 0), when none is
// live, or at max_length, where live hypotheses are finished without <eos>. Returns per input up
// to n_best hypotheses, best first.
std::vector<std::vector<Hypothesis>> beam_search(DecoderStep& decoder, int64_t B, const SearchOptions& options);

}  // namespace s2s
