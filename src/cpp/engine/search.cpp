// Greedy and beam search over a DecoderStep (search.h).
#include "engine/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "spec/model_spec.h"

namespace s2s {
namespace {

// The argmax of row[0..V) skipping `skip` (-1: none); like numpy, the first NaN wins.
int64_t argmax(const float* row, int64_t V, int64_t skip) {
  int64_t best = -1;
  for (int64_t v = 0; v < V; ++v) {
    if (v == skip) continue;
    if (std::isnan(row[v])) return v;
    if (best < 0 || row[v] > row[best]) best = v;
  }
  return best;
}

// The shift of log_softmax(z [V]) in float64: logp[v] = (z[v] - max) - log_sum (row_logp). A row holding
// NaN or +inf, or only -inf, gives NaN for every token (`finite` false); otherwise every logp is
// finite or -inf (z[v] = -inf) and none exceeds 0.
struct RowShift {
  double max = 0, log_sum = 0;
  bool finite = false;
};

RowShift row_shift(const float* z, int64_t V) {
  RowShift r;
  double m = z[0];
  for (int64_t v = 1; v < V; ++v) m = std::max(m, double(z[v]));
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(z[v]) - m);
  r.max = m;
  r.log_sum = std::log(sum);
  r.finite = std::isfinite(r.max) && std::isfinite(r.log_sum);
  return r;
}

inline double row_logp(const RowShift& shift, float z) { return (double(z) - shift.max) - shift.log_sum; }

// The tokens v that would complete an N-gram already in seq (N >= 1), appended to `out` (unsorted,
// maybe repeated).
void repeated_ngram_tokens(const std::vector<int64_t>& seq, int64_t N, int64_t V, std::vector<int64_t>& out) {
  const int64_t n = int64_t(seq.size());
  for (int64_t i = 0; i + N - 1 < n; ++i) {  // the N-gram seq[i .. i+N-1] exists
    bool same = true;  // its first N-1 tokens equal the last N-1 of seq
    for (int64_t k = 0; k < N - 1 && same; ++k) same = seq[i + k] == seq[n - (N - 1) + k];
    if (same && seq[i + N - 1] >= 0 && seq[i + N - 1] < V) out.push_back(seq[i + N - 1]);
  }
}

// Sets row[v] = -inf for each token v that would complete an N-gram already in seq (N >= 1).
void block_repeated_ngrams(const std::vector<int64_t>& seq, int64_t N, int64_t V, float* row) {
  std::vector<int64_t> blocked;
  repeated_ngram_tokens(seq, N, V, blocked);
  for (int64_t v : blocked) row[v] = -std::numeric_limits<float>::infinity();
}

// One draw of SearchOptions' sampling from the masked logits z [V] (see search.h).
int64_t sample_token(const float* z, int64_t V, const SearchOptions& o, std::mt19937_64& rng) {
  std::vector<int64_t> cand;
  for (int64_t v = 0; v < V; ++v)
    if (z[v] > -std::numeric_limits<float>::infinity()) cand.push_back(v);  // NaN and -inf are never drawn
  if (cand.empty()) return argmax(z, V, -1);
  std::stable_sort(cand.begin(), cand.end(), [&](int64_t a, int64_t b) { return z[a] > z[b]; });
  const int64_t k = o.sampling_topk == 0 ? int64_t(cand.size()) : std::min<int64_t>(o.sampling_topk, cand.size());
  const double m = z[cand[0]];
  std::vector<double> p(static_cast<size_t>(k));
  double total = 0;
  for (int64_t i = 0; i < k; ++i) total += p[i] = std::exp((double(z[cand[i]]) - m) / o.sampling_temperature);
  int64_t keep = k;
  if (o.sampling_topp < 1.0) {
    double cum = 0;
    for (keep = 0; keep < k;) {
      cum += p[keep++];
      if (cum >= o.sampling_topp * total) break;
    }
  }
  double kept = 0;
  for (int64_t i = 0; i < keep; ++i) kept += p[i];
  const double target = double(rng() >> 11) * 0x1.0p-53 * kept;
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (cum > target) return cand[i];
  }
  return cand[keep - 1];
}

// GNMT's coverage term beta * sum_{s < len} log(min(cov_s, 1)) of coverage cov [>= len].
double coverage_term(const double* cov, int64_t len, double beta) {
  double sum = 0;
  for (int64_t s = 0; s < len; ++s) sum += std::log(std::min(cov[s], 1.0));
  return beta * sum;
}

// A beam search candidate: beam j of an input extended by token v (index j*V + v), and its score.
struct Candidate {
  double value;
  int64_t index;
};

// The order of numpy's stable argsort of -values: larger first, NaN after everything, ties to the
// lower index.
inline bool ranks_before(const Candidate& a, const Candidate& c) {
  const bool na = std::isnan(a.value), nc = std::isnan(c.value);
  if (na != nc) return nc;
  if (!na && a.value != c.value) return a.value > c.value;
  return a.index < c.index;
}

// A beam's masks at one step: a forced token (>= 0: every other token gets -inf, no other mask),
// <eos> before min_length, the tokens that would repeat an N-gram (sorted).
struct RowMask {
  int64_t forced = -1;
  bool no_eos = false;
  std::vector<int64_t> blocked;
};

inline bool is_masked(const RowMask& m, int64_t v) {
  if (m.forced >= 0) return v != m.forced;
  return (m.no_eos && v == kEosId) || (!m.blocked.empty() && std::binary_search(m.blocked.begin(), m.blocked.end(), v));
}

// The masked float64 log-probability of token v of logits z.
inline double masked_logp(const RowShift& shift, const RowMask& mask, const float* z, int64_t v) {
  return is_masked(mask, v) ? -std::numeric_limits<double>::infinity() : row_logp(shift, z[v]);
}

// The K best of the K*V candidates score[j] + logp_j[v] of one input (logits z [K,V], scores [K]),
// best first: exactly the first K of the stable argsort over all of them, without sorting or even
// scoring them all. A candidate never scores above its beam (logp <= 0), so beams are visited best
// first and a beam that cannot beat the K-th best so far is skipped whole, log-softmax included
// (at the first step, all beams but one; often most of them later). Within a beam of finite score
// and log-softmax a candidate's score rises with its logit, so a logit at or below one that already
// lost is skipped with one float comparison. set_mask(j, mask) gives beam j's masks; shifts, masks
// and visited [K] receive the log-softmax shift and masks of the beams visited.
template <class SetMask>
std::vector<Candidate> best_candidates(const float* z, const double* score, int64_t K, int64_t V, SetMask set_mask,
                                       RowShift* shifts, RowMask* masks, char* visited) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  std::vector<int64_t> order(static_cast<size_t>(K));
  for (int64_t j = 0; j < K; ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t c) { return ranks_before({score[a], a}, {score[c], c}); });
  std::vector<Candidate> heap;  // the K best so far, the worst at the front
  heap.reserve(static_cast<size_t>(K));
  for (int64_t j : order) {
    const double s = score[j];
    if (int64_t(heap.size()) == K && !std::isnan(heap.front().value)) {
      const Candidate& worst = heap.front();  // every candidate of beam j is <= s, or NaN
      if (std::isnan(s) || s < worst.value || (s == worst.value && j * V > worst.index)) continue;
    }
    const float* zj = z + j * V;
    const RowShift shift = shifts[j] = row_shift(zj, V);
    set_mask(j, masks[j]);
    const RowMask& mask = masks[j];
    visited[j] = 1;
    const bool rising = std::isfinite(s) && shift.finite;
    float lost = std::numeric_limits<float>::quiet_NaN();  // (no comparison with NaN holds)
    for (int64_t v = 0; v < V; ++v) {
      if (zj[v] <= lost) continue;
      const bool masked = is_masked(mask, v);
      const Candidate c{s + (masked ? neg_inf : row_logp(shift, zj[v])), j * V + v};
      if (int64_t(heap.size()) < K) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), ranks_before);
      } else if (ranks_before(c, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), ranks_before);
        heap.back() = c;
        std::push_heap(heap.begin(), heap.end(), ranks_before);
      } else if (rising && !masked && c.value < heap.front().value) {
        lost = zj[v];  // the K-th best only improves: every logit <= this one loses too
      }
    }
  }
  std::sort_heap(heap.begin(), heap.end(), ranks_before);
  return heap;
}

}  // namespace

void check_search_options(const SearchOptions& o, int64_t B, int64_t V) {
  if (o.max_length < 1) throw std::invalid_argument("max_length must be >= 1; got " + std::to_string(o.max_length));
  if (o.min_length < 0 || o.min_length > o.max_length)
    throw std::invalid_argument("min_length must lie in [0, max_length]; got " + std::to_string(o.min_length));
  if (o.beam_size < 1 || o.beam_size > kMaxBeamSize)
    throw std::invalid_argument("beam_size must lie in [1, " + std::to_string(kMaxBeamSize) + "]");
  if (o.n_best < 1 || o.n_best > o.beam_size) throw std::invalid_argument("n_best must lie in [1, beam_size]");
  if (!(o.length_penalty >= 0)) throw std::invalid_argument("length_penalty must be >= 0");
  if (!(o.coverage_penalty >= 0) || std::isinf(o.coverage_penalty))
    throw std::invalid_argument("coverage_penalty must be a finite number >= 0; got " + std::to_string(o.coverage_penalty));
  if (o.no_repeat_ngram_size < 0)
    throw std::invalid_argument("no_repeat_ngram_size must be >= 0; got " + std::to_string(o.no_repeat_ngram_size));
  if (!(o.sampling_temperature > 0) || std::isinf(o.sampling_temperature))
    throw std::invalid_argument("sampling_temperature must be a finite number > 0; got " +
                                std::to_string(o.sampling_temperature));
  if (o.sampling_topk < 0) throw std::invalid_argument("sampling_topk must be >= 0; got " + std::to_string(o.sampling_topk));
  if (!(o.sampling_topp > 0 && o.sampling_topp <= 1))
    throw std::invalid_argument("sampling_topp must lie in (0, 1]; got " + std::to_string(o.sampling_topp));
  if (o.beam_size > 1 && (o.sampling_topk != 1 || o.sampling_topp != 1.0 || o.sampling_temperature != 1.0))
    throw std::invalid_argument("sampling (sampling_topk != 1, sampling_topp != 1 or sampling_temperature != 1) "
                                "needs beam_size 1; got beam_size " + std::to_string(o.beam_size));
  if (B >= 0 && int64_t(o.target_prefix.size()) > B)
    throw std::invalid_argument("target_prefix has " + std::to_string(o.target_prefix.size()) +
                                " entries for " + std::to_string(B) + " inputs");
  for (size_t i = 0; i < o.target_prefix.size(); ++i) {
    const auto& pre = o.target_prefix[i];
    if (int64_t(pre.size()) > o.max_length)
      throw std::invalid_argument("target_prefix[" + std::to_string(i) + "] has " + std::to_string(pre.size()) +
                                  " tokens, more than max_length=" + std::to_string(o.max_length));
    for (int64_t id : pre)
      if (id < kUnkId || (V >= 0 && id >= V))
        throw std::invalid_argument("target_prefix[" + std::to_string(i) + "] ids must lie in [" +
                                    std::to_string(kUnkId) + ", " + (V >= 0 ? std::to_string(V) : "V") +
                                    ") (no <pad>, <sos> or <eos>); got " + std::to_string(id));
  }
}

GreedyResult greedy_search(DecoderStep& decoder, const SearchOptions& o, const int64_t* input_index) {
  const int64_t R = decoder.rows(), V = decoder.vocabulary(), S = decoder.source_length();
  const bool sampling = o.sampling_topk != 1, coverage = o.coverage_penalty > 0;
  const bool scores = o.return_scores || o.return_token_scores || coverage;
  const bool weights = o.return_attention || coverage;
  auto input_of = [&](int64_t r) { return input_index ? input_index[r] : r; };
  auto prefix_of = [&](int64_t r) -> const std::vector<int64_t>* {
    const int64_t i = input_of(r);
    return i < int64_t(o.target_prefix.size()) ? &o.target_prefix[static_cast<size_t>(i)] : nullptr;
  };
  std::vector<std::mt19937_64> rngs;
  if (sampling)
    for (int64_t r = 0; r < R; ++r) rngs.emplace_back(o.seed + uint64_t(input_of(r)));
  std::vector<float> logits(static_cast<size_t>(R * V)), masked(static_cast<size_t>(V));
  std::vector<float> attention(weights ? static_cast<size_t>(R * S) : 0);
  std::vector<double> cov(coverage ? static_cast<size_t>(R * S) : 0);
  std::vector<double> log_probs(static_cast<size_t>(R), 0.0), chosen_scores;  // [T, R]
  std::vector<int64_t> tokens(static_cast<size_t>(R), kSosId), lengths(static_cast<size_t>(R), 0);
  std::vector<int64_t> chosen;        // [T, R], one step appended at a time
  std::vector<float> chosen_weights;  // [T, R, S]
  std::vector<char> done(static_cast<size_t>(R), 0);
  std::vector<int64_t> seq;
  int64_t T = 0;
  for (int64_t t = 0; t < o.max_length; ++t) {
    decoder.step(tokens.data(), logits.data(), weights ? attention.data() : nullptr);
    if (weights) {
      for (int64_t r = 0; r < R; ++r) {  // rows finished before this step keep zeros
        if (done[r]) std::fill(attention.begin() + r * S, attention.begin() + (r + 1) * S, 0.0f);
        for (int64_t s = 0; coverage && s < S; ++s) cov[r * S + s] += attention[r * S + s];
      }
      if (o.return_attention) chosen_weights.insert(chosen_weights.end(), attention.begin(), attention.end());
    }
    int64_t finished = 0;
    for (int64_t r = 0; r < R; ++r) {
      int64_t token = kPadId;
      double token_score = 0;
      if (!done[r]) {
        const float* z = logits.data() + r * V;
        const std::vector<int64_t>* prefix = prefix_of(r);
        if (prefix && t < int64_t(prefix->size())) {
          token = (*prefix)[static_cast<size_t>(t)];
        } else if (!sampling && o.no_repeat_ngram_size == 0) {  // plain greedy: no copy of the row
          token = argmax(z, V, t < o.min_length ? kEosId : -1);
        } else {
          std::copy_n(z, V, masked.begin());
          if (t < o.min_length) masked[kEosId] = -std::numeric_limits<float>::infinity();
          if (o.no_repeat_ngram_size > 0) {
            seq.clear();
            for (int64_t s = 0; s < t; ++s) seq.push_back(chosen[s * R + r]);
            block_repeated_ngrams(seq, o.no_repeat_ngram_size, V, masked.data());
          }
          token = sampling ? sample_token(masked.data(), V, o, rngs[r]) : argmax(masked.data(), V, -1);
        }
        if (scores) {
          token_score = row_logp(row_shift(z, V), z[token]);
          log_probs[r] += token_score;
        }
        ++lengths[r];
        if (token == kEosId) done[r] = 1;
      }
      tokens[r] = token;
      if (o.return_token_scores) chosen_scores.push_back(token_score);
      finished += done[r];
    }
    chosen.insert(chosen.end(), tokens.begin(), tokens.end());
    T = t + 1;
    if (finished == R) break;
  }
  GreedyResult result;
  result.steps = T;
  result.tokens.resize(static_cast<size_t>(R * T));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t t = 0; t < T; ++t) result.tokens[r * T + t] = chosen[t * R + r];
  if (o.return_attention) {
    result.attention.resize(static_cast<size_t>(R * T * S));
    for (int64_t r = 0; r < R; ++r)
      for (int64_t t = 0; t < T; ++t)
        std::copy_n(chosen_weights.begin() + (t * R + r) * S, S, result.attention.begin() + (r * T + t) * S);
  }
  if (o.return_token_scores) {
    result.token_scores.resize(static_cast<size_t>(R * T));
    for (int64_t r = 0; r < R; ++r)
      for (int64_t t = 0; t < T; ++t) result.token_scores[r * T + t] = chosen_scores[t * R + r];
  }
  if (scores) {
    result.log_probs = log_probs;
    result.lengths = lengths;
    result.scores.resize(static_cast<size_t>(R));
    for (int64_t r = 0; r < R; ++r) {
      result.scores[r] = log_probs[r] / std::pow((5.0 + double(lengths[r])) / 6.0, o.length_penalty);
      if (coverage) result.scores[r] += coverage_term(cov.data() + r * S, decoder.source_length_of(r), o.coverage_penalty);
    }
  }
  return result;
}

std::vector<std::vector<Hypothesis>> beam_search(DecoderStep& decoder, int64_t B, const SearchOptions& options,
                                                 const int64_t* input_index) {
  const int64_t K = options.beam_size, V = decoder.vocabulary(), S = decoder.source_length();
  const int64_t R = B * K, n_best = options.n_best;
  const double alpha = options.length_penalty;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const bool coverage = options.coverage_penalty > 0, weights = options.return_attention || coverage;
  const int64_t N = options.no_repeat_ngram_size;
  auto prefix_of = [&](int64_t b) -> const std::vector<int64_t>* {
    const int64_t i = input_index ? input_index[b] : b;
    return i < int64_t(options.target_prefix.size()) ? &options.target_prefix[static_cast<size_t>(i)] : nullptr;
  };
  std::vector<std::vector<int64_t>> seqs(N > 0 ? static_cast<size_t>(R) : 0);  // live hypotheses' tokens
  std::vector<std::vector<double>> hist_token_scores;  // per step [R]: the chosen token's log-prob
  auto penalty = [&](double len) { return std::pow((5.0 + len) / 6.0, alpha); };
  std::vector<double> scores(static_cast<size_t>(R), neg_inf);
  for (int64_t b = 0; b < B; ++b) scores[b * K] = 0.0;  // one live beam per input to start
  std::vector<int64_t> tokens(static_cast<size_t>(R), kSosId);
  std::vector<std::vector<int64_t>> hist_tokens, hist_parents;
  std::vector<std::vector<float>> hist_attention;  // per step [R, S] (rows before the reorder)
  std::vector<std::vector<Hypothesis>> finished(static_cast<size_t>(B));
  std::vector<char> done(static_cast<size_t>(B), 0);
  std::vector<float> logits(static_cast<size_t>(R * V));
  std::vector<float> attention(weights ? static_cast<size_t>(R * S) : 0);
  const double bound_factor = penalty(double(options.max_length));
  // per row of the step: its log-softmax shift and masks, where the selection looked at it (shifted)
  std::vector<RowShift> shifts(static_cast<size_t>(R));
  std::vector<RowMask> masks(static_cast<size_t>(R));
  std::vector<char> shifted(static_cast<size_t>(R));
  for (int64_t t = 0; t < options.max_length; ++t) {
    decoder.step(tokens.data(), logits.data(), weights ? attention.data() : nullptr);
    if (weights) hist_attention.push_back(attention);
    std::vector<int64_t> step_tokens(static_cast<size_t>(R)), step_parents(static_cast<size_t>(R));
    std::vector<double> new_scores(static_cast<size_t>(R), neg_inf);
    std::fill(shifted.begin(), shifted.end(), 0);
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {  // its rows are all dead: they keep their tokens, nothing is chosen
        for (int64_t r = b * K; r < (b + 1) * K; ++r) {
          step_tokens[r] = tokens[r];
          step_parents[r] = r;
        }
        continue;
      }
      const std::vector<int64_t>* prefix = prefix_of(b);
      const int64_t forced = prefix && t < int64_t(prefix->size()) ? (*prefix)[static_cast<size_t>(t)] : -1;
      const std::vector<Candidate> best = best_candidates(
          logits.data() + b * K * V, scores.data() + b * K, K, V, [&](int64_t j, RowMask& mask) {
            const int64_t r = b * K + j;
            mask = RowMask();
            mask.forced = forced;  // forced: every other token -inf (and no other mask)
            mask.no_eos = forced < 0 && t < options.min_length;
            if (forced < 0 && N > 0 && scores[r] != neg_inf) {
              repeated_ngram_tokens(seqs[r], N, V, mask.blocked);
              std::sort(mask.blocked.begin(), mask.blocked.end());
            }
          }, shifts.data() + b * K, masks.data() + b * K, shifted.data() + b * K);
      for (int64_t j = 0; j < K; ++j) {
        step_tokens[b * K + j] = best[j].index % V;
        step_parents[b * K + j] = b * K + best[j].index / V;
        new_scores[b * K + j] = best[j].value;
      }
    }
    hist_tokens.push_back(step_tokens);
    hist_parents.push_back(step_parents);
    if (options.return_token_scores) {
      std::vector<double> step_scores(static_cast<size_t>(R), 0.0);
      for (int64_t r = 0; r < R; ++r) {
        const int64_t p = step_parents[r];
        if (shifted[p])  // (the rows of an input that is done choose nothing)
          step_scores[r] = masked_logp(shifts[p], masks[p], logits.data() + p * V, step_tokens[r]);
      }
      hist_token_scores.push_back(std::move(step_scores));
    }
    const bool last = t == options.max_length - 1;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      for (int64_t j = 0; j < K; ++j) {
        const double score = new_scores[b * K + j];
        if (score == neg_inf) continue;
        if (step_tokens[b * K + j] == kEosId || last) {
          Hypothesis h;
          int64_t slot = b * K + j;
          for (int64_t s = t; s >= 0; --s) {  // back through the parents
            const int64_t parent = hist_parents[s][slot];
            h.tokens.push_back(hist_tokens[s][slot]);
            if (options.return_token_scores) h.token_scores.push_back(hist_token_scores[s][slot]);
            if (weights)
              h.attention.insert(h.attention.end(), hist_attention[s].begin() + parent * S,
                                 hist_attention[s].begin() + (parent + 1) * S);
            slot = parent;
          }
          std::reverse(h.tokens.begin(), h.tokens.end());
          std::reverse(h.token_scores.begin(), h.token_scores.end());
          const int64_t n = int64_t(h.tokens.size());
          for (int64_t i = 0; weights && i < n / 2; ++i)  // rows of S: last step first -> first
            std::swap_ranges(h.attention.begin() + i * S, h.attention.begin() + (i + 1) * S,
                             h.attention.begin() + (n - 1 - i) * S);
          h.log_prob = score;
          h.score = score / penalty(double(n));
          if (coverage) {  // the weights behind each token, summed per source position
            std::vector<double> cov(static_cast<size_t>(S), 0.0);
            for (int64_t i = 0; i < n; ++i)
              for (int64_t s = 0; s < S; ++s) cov[s] += h.attention[i * S + s];
            h.score += coverage_term(cov.data(), decoder.source_length_of(b * K + j), options.coverage_penalty);
            if (!options.return_attention) h.attention.clear();
          }
          finished[b].push_back(std::move(h));
          new_scores[b * K + j] = neg_inf;
        }
      }
      std::stable_sort(finished[b].begin(), finished[b].end(),
                       [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
      double alive_best = neg_inf;  // NaN propagates, as numpy's max does
      for (int64_t j = 0; j < K; ++j) {
        const double v = new_scores[b * K + j];
        if (std::isnan(v) || std::isnan(alive_best)) alive_best = std::nan("");
        else alive_best = std::max(alive_best, v);
      }
      if (alive_best == neg_inf ||
          (int64_t(finished[b].size()) >= n_best && alive_best / bound_factor <= finished[b][n_best - 1].score))
        done[b] = 1;
      if (done[b])
        for (int64_t j = 0; j < K; ++j) new_scores[b * K + j] = neg_inf;
    }
    if (std::all_of(done.begin(), done.end(), [](char d) { return d != 0; })) break;
    decoder.reorder(step_parents.data());
    if (N > 0) {
      std::vector<std::vector<int64_t>> next(static_cast<size_t>(R));
      for (int64_t r = 0; r < R; ++r) {
        next[r] = seqs[step_parents[r]];
        next[r].push_back(step_tokens[r]);
      }
      seqs.swap(next);
    }
    tokens = step_tokens;
    scores = new_scores;
  }
  for (auto& f : finished)
    if (int64_t(f.size()) > n_best) f.resize(static_cast<size_t>(n_best));
  return finished;
}

}  // namespace s2s
