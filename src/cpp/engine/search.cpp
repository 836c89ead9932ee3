// Greedy and beam search over a DecoderStep (search.h).
#include "engine/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
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

// logp [V] = log_softmax(z [V]) in float64
void log_softmax(const float* z, int64_t V, double* logp) {
  double m = z[0];
  for (int64_t v = 1; v < V; ++v) m = std::max(m, double(z[v]));
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(z[v]) - m);
  const double log_sum = std::log(sum);
  for (int64_t v = 0; v < V; ++v) logp[v] = (double(z[v]) - m) - log_sum;
}

}  // namespace

void check_search_options(const SearchOptions& o) {
  if (o.max_length < 1) throw std::invalid_argument("max_length must be >= 1; got " + std::to_string(o.max_length));
  if (o.min_length < 0 || o.min_length > o.max_length)
    throw std::invalid_argument("min_length must lie in [0, max_length]; got " + std::to_string(o.min_length));
  if (o.beam_size < 1 || o.beam_size > kMaxBeamSize)
    throw std::invalid_argument("beam_size must lie in [1, " + std::to_string(kMaxBeamSize) + "]");
  if (o.n_best < 1 || o.n_best > o.beam_size) throw std::invalid_argument("n_best must lie in [1, beam_size]");
  if (!(o.length_penalty >= 0)) throw std::invalid_argument("length_penalty must be >= 0");
}

GreedyResult greedy_search(DecoderStep& decoder, const SearchOptions& options) {
  const int64_t R = decoder.rows(), V = decoder.vocabulary(), S = decoder.source_length();
  std::vector<float> logits(static_cast<size_t>(R * V));
  std::vector<float> attention(options.return_attention ? static_cast<size_t>(R * S) : 0);
  std::vector<int64_t> tokens(static_cast<size_t>(R), kSosId);
  std::vector<int64_t> chosen;        // [T, R], one step appended at a time
  std::vector<float> chosen_weights;  // [T, R, S]
  std::vector<char> done(static_cast<size_t>(R), 0);
  int64_t T = 0;
  for (int64_t t = 0; t < options.max_length; ++t) {
    decoder.step(tokens.data(), logits.data(), options.return_attention ? attention.data() : nullptr);
    if (options.return_attention) {
      for (int64_t r = 0; r < R; ++r)  // rows finished before this step keep zeros
        if (done[r]) std::fill(attention.begin() + r * S, attention.begin() + (r + 1) * S, 0.0f);
      chosen_weights.insert(chosen_weights.end(), attention.begin(), attention.end());
    }
    int64_t finished = 0;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t best = argmax(logits.data() + r * V, V, t < options.min_length ? kEosId : -1);
      const int64_t token = done[r] ? kPadId : best;
      if (token == kEosId) done[r] = 1;
      tokens[r] = token;
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
  if (options.return_attention) {
    result.attention.resize(static_cast<size_t>(R * T * S));
    for (int64_t r = 0; r < R; ++r)
      for (int64_t t = 0; t < T; ++t)
        std::copy_n(chosen_weights.begin() + (t * R + r) * S, S, result.attention.begin() + (r * T + t) * S);
  }
  return result;
}

std::vector<std::vector<Hypothesis>> beam_search(DecoderStep& decoder, int64_t B, const SearchOptions& options) {
  const int64_t K = options.beam_size, V = decoder.vocabulary(), S = decoder.source_length();
  const int64_t R = B * K, n_best = options.n_best;
  const double alpha = options.length_penalty;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  auto penalty = [&](double len) { return std::pow((5.0 + len) / 6.0, alpha); };
  std::vector<double> scores(static_cast<size_t>(R), neg_inf), logp(static_cast<size_t>(R * V));
  for (int64_t b = 0; b < B; ++b) scores[b * K] = 0.0;  // one live beam per input to start
  std::vector<int64_t> tokens(static_cast<size_t>(R), kSosId);
  std::vector<std::vector<int64_t>> hist_tokens, hist_parents;
  std::vector<std::vector<float>> hist_attention;  // per step [R, S] (rows before the reorder)
  std::vector<std::vector<Hypothesis>> finished(static_cast<size_t>(B));
  std::vector<char> done(static_cast<size_t>(B), 0);
  std::vector<float> logits(static_cast<size_t>(R * V));
  std::vector<float> attention(options.return_attention ? static_cast<size_t>(R * S) : 0);
  const double bound_factor = penalty(double(options.max_length));
  std::vector<int64_t> cand(static_cast<size_t>(K * V));
  for (int64_t t = 0; t < options.max_length; ++t) {
    decoder.step(tokens.data(), logits.data(), options.return_attention ? attention.data() : nullptr);
    if (options.return_attention) hist_attention.push_back(attention);
    for (int64_t r = 0; r < R; ++r) {
      log_softmax(logits.data() + r * V, V, logp.data() + r * V);
      if (t < options.min_length) logp[r * V + kEosId] = neg_inf;
    }
    std::vector<int64_t> step_tokens(static_cast<size_t>(R)), step_parents(static_cast<size_t>(R));
    std::vector<double> new_scores(static_cast<size_t>(R));
    for (int64_t b = 0; b < B; ++b) {
      // the K best of K*V candidates: numpy's stable argsort of -candidates (larger first, NaN
      // after everything, ties by index)
      auto value = [&](int64_t i) { return scores[b * K + i / V] + logp[(b * K + i / V) * V + i % V]; };
      for (int64_t i = 0; i < K * V; ++i) cand[i] = i;
      std::partial_sort(cand.begin(), cand.begin() + K, cand.end(), [&](int64_t a, int64_t c) {
        const double va = value(a), vc = value(c);
        const bool na = std::isnan(va), nc = std::isnan(vc);
        if (na != nc) return nc;
        if (!na && va != vc) return va > vc;
        return a < c;
      });
      for (int64_t j = 0; j < K; ++j) {
        step_tokens[b * K + j] = cand[j] % V;
        step_parents[b * K + j] = b * K + cand[j] / V;
        new_scores[b * K + j] = value(cand[j]);
      }
    }
    hist_tokens.push_back(step_tokens);
    hist_parents.push_back(step_parents);
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
            if (options.return_attention)
              h.attention.insert(h.attention.end(), hist_attention[s].begin() + parent * S,
                                 hist_attention[s].begin() + (parent + 1) * S);
            slot = parent;
          }
          std::reverse(h.tokens.begin(), h.tokens.end());
          const int64_t n = int64_t(h.tokens.size());
          for (int64_t i = 0; options.return_attention && i < n / 2; ++i)  // rows of S: last step first -> first
            std::swap_ranges(h.attention.begin() + i * S, h.attention.begin() + (i + 1) * S,
                             h.attention.begin() + (n - 1 - i) * S);
          h.log_prob = score;
          h.score = score / penalty(double(n));
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
    tokens = step_tokens;
    scores = new_scores;
  }
  for (auto& f : finished)
    if (int64_t(f.size()) > n_best) f.resize(static_cast<size_t>(n_best));
  return finished;
}

}  // namespace s2s
