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
  // Row r's source length (<= S): the columns of its attention that can be non-zero (coverage).
  virtual int64_t source_length_of(int64_t /*row*/) const { return source_length(); }
  // logits [R,V] of the next token after `tokens` [R]; attention [R,S] of this step (zeros
  // without attention; nullptr: not wanted). Advances every row's state.
  virtual void step(const int64_t* tokens, float* logits, float* attention) = 0;
  // Row r's state becomes row parents[r]'s (beam search, after each step).
  virtual void reorder(const int64_t* parents) = 0;
};

// Brace-initialised in this order: {beam_size, max_length, min_length, n_best, length_penalty,
// return_attention, ...} (the fields after return_attention keep their defaults unless named).
struct SearchOptions {
  int64_t beam_size = 1, max_length = 50, min_length = 0, n_best = 1;
  double length_penalty = 0.0;  // GNMT's alpha: score = log P / ((5 + |Y|) / 6)^alpha
  bool return_attention = false;
  // GNMT's coverage penalty beta (OpenNMT-py's coverage_wu): the final score gains
  // beta * sum_s log(min(sum_t a_ts, 1)) over the row's source positions s < its length. It
  // ranks finished hypotheses only (not stepwise); beta > 0 needs attention weights.
  double coverage_penalty = 0.0;
  // N > 0: a token that would complete an N-gram already in the hypothesis (its generated
  // tokens, a target prefix included) gets log-probability -inf (fairseq, CTranslate2).
  int64_t no_repeat_ngram_size = 0;
  // Random sampling, greedy path only (beam_size > 1 refuses every value but the defaults, as
  // CTranslate2 refuses sampling in beam search): sampling_topk 1 is the argmax; otherwise the
  // next token is drawn from softmax(logits / temperature) restricted to the topk most likely
  // tokens (0: all), then to the smallest most-likely-first set whose probability reaches topp.
  // The random numbers: std::mt19937_64 seeded with seed + the row's input index (so results
  // depend on neither threads nor batch order), one 64-bit draw u per sampled step, mapped to
  // [0,1) as (u >> 11) * 2^-53; the token is the first (most likely first, ties to the lower id)
  // whose cumulative probability exceeds that number times the kept total.
  double sampling_temperature = 1.0;
  int64_t sampling_topk = 1;
  double sampling_topp = 1.0;
  uint64_t seed = 0;
  // Greedy: compute each row's log_prob and score (beam search always has them); implied by
  // return_token_scores and by coverage_penalty > 0.
  bool return_scores = false;
  // Per token the model's log-probability of it (float64 log-softmax of the logits: temperature
  // 1, before masks); they sum to log_prob.
  bool return_token_scores = false;
  // Forced first tokens per input (empty: none, or no entry per input): fed and scored, then the
  // search continues freely; all beams of an input share it. Ids in [4, V) or <unk> (3), at
  // most max_length of them.
  std::vector<std::vector<int64_t>> target_prefix{};
};

// std::invalid_argument unless 1 <= max_length, 0 <= min_length <= max_length,
// 1 <= n_best <= beam_size <= kMaxBeamSize, length_penalty >= 0, coverage_penalty >= 0 (finite),
// no_repeat_ngram_size >= 0, sampling_temperature > 0 (finite), sampling_topk >= 0,
// 0 < sampling_topp <= 1, sampling only with beam_size 1, and target_prefix has no more entries
// than inputs (B; -1: unchecked), each at most max_length ids in [3, V) (V < 0: unchecked).
void check_search_options(const SearchOptions& options, int64_t B = -1, int64_t V = -1);

// A greedy decode's rows (greedy_search: the decoder's row order; Engine::greedy: input order).
struct GreedyResult {
  int64_t steps = 0;              // T: the longest row (at most max_length)
  std::vector<int64_t> tokens;    // [R,T]: each row up to and including <eos>, then <pad>
  std::vector<float> attention;   // [R,T,S] when asked: the weights behind each token, 0 after <eos>
  std::vector<double> log_probs;  // [R] with return_scores: the sum of the row's token scores
  std::vector<double> scores;     // [R] with return_scores: log_prob / ((5 + n) / 6)^alpha + coverage
  std::vector<double> token_scores;  // [R,T] with return_token_scores, 0 after <eos>
  std::vector<int64_t> lengths;   // [R] with return_scores: the row's tokens, <eos> included
};

// Greedy decoding (or sampling, see SearchOptions) of the decoder's R rows: the argmax token per
// step (ties to the lower id, the first NaN wins as in numpy); <eos> is not chosen before step
// min_length. Memory grows with the steps taken, not with max_length. input_index [R]: row r's
// input (its target_prefix entry and its random seed); nullptr: r.
GreedyResult greedy_search(DecoderStep& decoder, const SearchOptions& options, const int64_t* input_index = nullptr);

struct Hypothesis {
  std::vector<int64_t> tokens;  // ends with <eos> when finished
  double score = 0;             // log_prob / ((5 + |tokens|) / 6)^alpha + coverage penalty
  double log_prob = 0;
  std::vector<float> attention;  // [|tokens|, S] when asked: the weights behind each token
  std::vector<double> token_scores;  // [|tokens|] with return_token_scores
};

// Beam search of B inputs; the decoder's rows are the beams, row b*K + j beam j of input b, all
// starting from input b's state. Each step extends every live hypothesis by every token (log-
// softmax in float64) and keeps the K best of each input (ties to the lower candidate index); an
// extension ending in <eos> is finished. An input stops when it has n_best finished hypotheses
// and no live one can still beat them (a bound that holds for length_penalty >= 0), when none is
// live, or at max_length, where live hypotheses are finished without <eos>. Returns per input up
// to n_best hypotheses, best first. The bound still holds with coverage_penalty, whose term is
// <= 0 and counts in the finished scores it is compared with. input_index [B]: input
// b's index in options.target_prefix; nullptr: b.
std::vector<std::vector<Hypothesis>> beam_search(DecoderStep& decoder, int64_t B, const SearchOptions& options,
                                                 const int64_t* input_index = nullptr);

}  // namespace s2s
