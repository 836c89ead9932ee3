// The float32 range check of the engine's weights (range_check.h).
#include "engine/range_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace s2s {
namespace {

// Bounds of |W| @ x summed in double, refused past float32's range (range_check.h).
class RangeCheck {
 public:
  using Vec = std::vector<double>;
  explicit RangeCheck(const std::map<std::string, Tensor>& params) : params_(params) {}

  // A term of a bound: |W| @ x for a matrix, |b| for a vector (x empty).
  struct Term {
    std::string name;
    Vec x;
  };

  // Each row's sum of the terms, refused past the range naming the terms' parameters.
  Vec bound(const std::string& what, const std::vector<Term>& terms) const {
    Vec total;
    std::string names;
    for (const Term& term : terms) {
      const Vec part = product(term.name, term.x);
      if (total.empty()) total.assign(part.size(), 0.0);
      for (size_t r = 0; r < part.size(); ++r) total[r] += part[r];
      names += (names.empty() ? "" : ", ") + term.name;
    }
    refuse_past_range(what, total, names);
    return total;
  }

  // |W| @ x for a matrix, |b| for a vector (x empty).
  Vec product(const std::string& name, const Vec& x) const {
    const Tensor& t = params_.at(name);  // (presence and shape checked by the constructor)
    const size_t rows = static_cast<size_t>(t.shape[0]);
    Vec y(rows, 0.0);
    if (t.shape.size() == 1) {
      for (size_t r = 0; r < rows; ++r) y[r] = std::fabs(double(t.values[r]));
      return y;
    }
    const size_t cols = static_cast<size_t>(t.shape[1]);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) y[r] += std::fabs(double(t.values[r * cols + c])) * x[c];
    return y;
  }

  // |W|^T @ x: the bound on x @ W.
  Vec transposed(const std::string& name, const Vec& x) const {
    const Tensor& t = params_.at(name);
    const size_t rows = static_cast<size_t>(t.shape[0]), cols = static_cast<size_t>(t.shape[1]);
    Vec y(cols, 0.0);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) y[c] += std::fabs(double(t.values[r * cols + c])) * x[r];
    return y;
  }

  // The largest absolute value of each column of a [rows, cols] parameter (an embedding row's bound).
  Vec column_max(const std::string& name) const {
    const Tensor& t = params_.at(name);
    const size_t rows = static_cast<size_t>(t.shape[0]), cols = static_cast<size_t>(t.shape[1]);
    Vec m(cols, 0.0);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) m[c] = nan_max(m[c], std::fabs(double(t.values[r * cols + c])));
    return m;
  }

  double abs_sum(const std::string& name) const {
    double sum = 0.0;
    for (float v : params_.at(name).values) sum += std::fabs(double(v));
    return sum;
  }

  static void refuse_past_range(const std::string& what, const Vec& values, const std::string& names) {
    double top = 0.0;
    for (double v : values) top = nan_max(top, v);
    const double largest = double(std::numeric_limits<float>::max());
    // float32's largest value halved, to cover rounding on the way and bfloat16 or int8 storage
    // (range_check.h)
    if (top <= largest / 2) return;  // (NaN fails)
    throw std::invalid_argument("the model's " + what + " can reach " + general_3(top) + " in absolute value (" +
                                names + "), past float32's range (largest " + general_3(largest) +
                                "): decoding would give inf or NaN; the weights are too large or not finite");
  }

  static Vec ones(int64_t n) { return Vec(static_cast<size_t>(n), 1.0); }
  static Vec at_least_one(Vec v) {
    for (double& x : v) x = std::max(1.0, x);  // (NaN refused before)
    return v;
  }
  static Vec joined(Vec a, const Vec& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

 private:
  static double nan_max(double a, double b) { return std::isnan(a) || std::isnan(b) ? std::nan("") : std::max(a, b); }
  // Python's format(x, ".3g"), NaN unsigned
  static std::string general_3(double x) {
    if (std::isnan(x)) return "nan";
    char text[32];
    std::snprintf(text, sizeof text, "%.3g", x);
    return text;
  }

  const std::map<std::string, Tensor>& params_;
};

}  // namespace

void check_float32_range(const ModelConfig& cfg, const std::map<std::string, Tensor>& params) {
  using Vec = RangeCheck::Vec;
  const RangeCheck check(params);
  const int64_t H = cfg.hidden, L = cfg.layers, He = cfg.bridge_concat ? H / 2 : H;
  const std::vector<std::string> directions =
      cfg.bidirectional ? std::vector<std::string>{"", "_reverse"} : std::vector<std::string>{""};
  Vec x = check.column_max("src_embed");
  for (int64_t k = 0; k < L; ++k) {
    for (const std::string& suffix : directions) {
      const std::string p = "encoder.l" + std::to_string(k) + suffix;
      check.bound(p + " gates", {{p + ".w_ih", x}, {p + ".w_hh", RangeCheck::ones(He)}, {p + ".b", {}}});
    }
    x = RangeCheck::ones(int64_t(directions.size()) * He);
  }
  const Vec ones = RangeCheck::ones(H);
  Vec h0 = ones, memory = ones;
  const bool attention = cfg.attention != AttentionKind::none;
  if (cfg.bidirectional && !cfg.bridge_concat) {  // the bridge's outputs: the decoder's h0, the attention memory
    h0 = RangeCheck::at_least_one(check.bound("bridge.h output", {{"bridge.h.weight", x}, {"bridge.h.bias", {}}}));
    if (attention) memory = check.bound("attention memory", {{"bridge.memory.weight", x}});
  }
  const Vec query = cfg.bahdanau ? h0 : ones;  // Bahdanau's first query is the initial state
  switch (cfg.attention) {
    case AttentionKind::dot:
    case AttentionKind::scaled_dot: {
      double score = 0.0;
      for (int64_t i = 0; i < H; ++i) score += query[i] * memory[i];
      RangeCheck::refuse_past_range("attention scores", {score}, "the attention memory");
      break;
    }
    case AttentionKind::general: {  // training sums (q W_a) . hs, inference q . (W_a hs)
      const Vec keys = check.product("attention.w_a", memory), queries = check.transposed("attention.w_a", query);
      double score = 0.0;
      for (int64_t i = 0; i < H; ++i) score += queries[i] * memory[i];
      RangeCheck::refuse_past_range("attention scores", RangeCheck::joined(RangeCheck::joined(keys, queries), {score}),
                                    "attention.w_a");
      break;
    }
    case AttentionKind::concat: {  // the query bias may join the query or the keys: both are bounded
      std::vector<RangeCheck::Term> q = {{"attention.w_q", query}}, k = {{"attention.w_k", memory}};
      if (cfg.query_bias) {
        q.push_back({"attention.b_q", {}});
        k.push_back({"attention.b_q", {}});
      }
      check.bound("attention query projection", q);
      check.bound("attention keys", k);
      RangeCheck::refuse_past_range("attention scores", {check.abs_sum("attention.v")}, "attention.v");
      break;
    }
    case AttentionKind::location:
      check.bound("attention scores", {{"attention.w_a", query}});
      break;
    case AttentionKind::none:
      break;
  }
  Vec o = ones;  // the output layer's input: h, or the attentional state (tanh, or unbounded but by this)
  if (attention) {
    const Vec combined =
        check.bound("combine layer", {{"combine.weight", RangeCheck::joined(memory, ones)}, {"combine.bias", {}}});
    if (!cfg.combine_tanh) o = RangeCheck::at_least_one(combined);
  }
  x = check.column_max("tgt_embed");
  if (attention && (cfg.bahdanau || cfg.input_feeding)) x = RangeCheck::joined(x, cfg.bahdanau ? memory : o);
  for (int64_t k = 0; k < L; ++k) {
    const std::string p = "decoder.l" + std::to_string(k);
    check.bound(p + " gates", {{p + ".w_ih", x}, {p + ".w_hh", h0}, {p + ".b", {}}});
    x = ones;
  }
  check.bound("logits", {{"out.weight", o}, {"out.bias", {}}});
}


}  // namespace s2s
