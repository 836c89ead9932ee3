// Preparing the engine's weights (weights.h).
#include "engine/weights.h"

#include <stdexcept>

#include "runtime/quantize.h"

#include "ops/dense.h"

namespace s2s {
namespace {

constexpr size_t kProjectedTableMaxBytes = size_t(16) << 20;

std::string shape_text(const Shape& shape) {
  std::string text;
  for (int64_t d : shape) text += (text.empty() ? "" : ", ") + std::to_string(d);
  return "(" + text + ")";
}

// params with every matrix (2-D parameter) replaced by the values of its int8 form: each row
// quantized by the one rule and dequantized (q * scale). Vectors (biases, attention.v) stay.
std::map<std::string, Tensor> int8_values(const std::map<std::string, Tensor>& params) {
  std::map<std::string, Tensor> out = params;
  std::vector<int8_t> q;
  for (auto& [name, t] : out) {
    if (t.shape.size() != 2 || t.shape[1] == 0) continue;
    const int64_t rows = t.shape[0], cols = t.shape[1];
    q.resize(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      float* x = t.values.data() + r * cols;
      const float scale = int8_row_scale(x, cols);
      quantize_int8_row(x, cols, scale, q.data());
      dequantize_int8_row(q.data(), cols, scale, x);
    }
  }
  return out;
}

}  // namespace

void check_engine_parameters(const ModelConfig& cfg, const std::map<std::string, Tensor>& params) {
  visit_parameters(cfg, [&](const std::string& name, const Shape& shape) {
    auto it = params.find(name);
    if (it == params.end()) throw std::invalid_argument("parameter '" + name + "' is missing");
    if (it->second.shape != shape)
      throw std::invalid_argument("parameter '" + name + "' has shape " + shape_text(it->second.shape) +
                                  "; expected " + shape_text(shape));
    size_t count = 1;
    for (int64_t d : shape) count *= static_cast<size_t>(d);
    if (it->second.values.size() != count)
      throw std::invalid_argument("parameter '" + name + "' holds " + std::to_string(it->second.values.size()) +
                                  " values for its shape's " + std::to_string(count));
  });
}

void prepare_engine_weights(EngineWeights& w, const ModelConfig& cfg, const std::map<std::string, Tensor>& given,
                            WeightType type) {
  check_engine_parameters(cfg, given);
  // int8: every matrix read as its int8 values; those in float32 storage (embeddings, attention,
  // bridge, the projected table) hold them exactly, and quantizing them again for the int8
  // products gives the same int8 rows and scales (the rule is idempotent)
  const std::map<std::string, Tensor> quantized = type == WeightType::int8 ? int8_values(given) : std::map<std::string, Tensor>();
  const std::map<std::string, Tensor>& params = type == WeightType::int8 ? quantized : given;
  auto values = [&](const std::string& name) { return params.at(name).values.data(); };
  auto copy = [&](const std::string& name) {
    const std::vector<float>& v = params.at(name).values;
    return Buffer<float>(v.begin(), v.end());
  };
  // columns [c0, in) of an LSTM's input weights [4h, in], and its recurrent weights [4h, h]
  auto lstm = [&](const std::string& p, int64_t in, int64_t h, int64_t c0 = 0) {
    EngineWeights::Lstm l;
    l.w_ih = prepare_weights(values(p + ".w_ih"), 4 * h, in, c0, in, type);
    l.w_hh = prepare_weights(values(p + ".w_hh"), 4 * h, h, 0, h, type);
    l.b = copy(p + ".b");
    return l;
  };
  w.cfg = cfg;
  w.type = type;
  const int64_t H = cfg.hidden, E = cfg.embed, G = 4 * H, V = cfg.tgt_vocab, He = cfg.encoder_hidden();
  const int64_t D = cfg.bidirectional ? 2 : 1;
  w.src_embed = copy("src_embed");
  w.tgt_embed = copy("tgt_embed");
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const int64_t in = l == 0 ? E : D * He;
    w.enc_fwd.push_back(lstm("encoder.l" + std::to_string(l), in, He));
    if (cfg.bidirectional) w.enc_bwd.push_back(lstm("encoder.l" + std::to_string(l) + "_reverse", in, He));
  }
  if (cfg.bidirectional && !cfg.bridge_concat) {
    w.bridge_h_w = copy("bridge.h.weight");
    w.bridge_h_b = copy("bridge.h.bias");
    w.bridge_c_w = copy("bridge.c.weight");
    w.bridge_c_b = copy("bridge.c.bias");
    if (cfg.has_attention()) w.bridge_m_w = copy("bridge.memory.weight");
  }
  const bool table = static_cast<size_t>(V) * G * sizeof(float) <= kProjectedTableMaxBytes;
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "decoder.l" + std::to_string(l);
    if (l == 0) {
      const int64_t in = cfg.decoder_input();
      w.dec.push_back(lstm(p, in, H, E));  // the non-embedding columns
      // float32 when folded into the table below (once, at load); else in the engine's storage type
      w.dec0_embed_cols = prepare_weights(values(p + ".w_ih"), G, in, 0, E, table ? WeightType::float32 : type);
    } else {
      w.dec.push_back(lstm(p, H, H));
    }
  }
  if (table) {
    // E_proj [V, G] = tgt_embed @ W_e^T + b: a step's embedding product becomes a row lookup
    w.projected_embed.resize(static_cast<size_t>(V * G));
    linear_forward<float>(w.projected_embed.data(), w.tgt_embed.data(), w.dec0_embed_cols.f32.data(),
                          w.dec[0].b.data(), V, E, G, Activation::none);
  }
  switch (cfg.attention) {
    case AttentionKind::general:
    case AttentionKind::location:
      w.att_w_a = copy("attention.w_a");
      break;
    case AttentionKind::concat:
      w.att_w_q = copy("attention.w_q");
      w.att_w_k = copy("attention.w_k");
      w.att_v = copy("attention.v");
      if (cfg.query_bias) w.att_b_q = copy("attention.b_q");
      break;
    default:
      break;
  }
  switch (cfg.attention) {
    case AttentionKind::scaled_dot: w.score_kind = ScoreKind::scaled_dot; break;
    case AttentionKind::general: w.score_kind = ScoreKind::general; break;
    case AttentionKind::concat: w.score_kind = ScoreKind::concat; break;
    case AttentionKind::location: w.score_kind = ScoreKind::location; break;
    default: w.score_kind = ScoreKind::dot; break;
  }
  auto data_or_null = [](const Buffer<float>& b) { return b.empty() ? nullptr : b.data(); };
  w.attention_params.w_a = data_or_null(w.att_w_a);
  w.attention_params.w_q = data_or_null(w.att_w_q);
  w.attention_params.w_k = data_or_null(w.att_w_k);
  w.attention_params.v = data_or_null(w.att_v);
  w.attention_params.b_q = data_or_null(w.att_b_q);
  if (cfg.has_attention()) {
    w.combine = prepare_weights(values("combine.weight"), H, 2 * H, 0, 2 * H, type);
    w.combine_b = copy("combine.bias");
  }
  w.out = prepare_weights(values("out.weight"), V, H, 0, H, type);
  w.out_b = copy("out.bias");
  // The float32 matrices in panels (matrix.h): read as one stream per panel, once for a beam's or
  // a batch's rows; the encoder's recurrence then multiplies step by step with them too.
  for (auto* layers : {&w.enc_fwd, &w.enc_bwd, &w.dec})
    for (auto& l : *layers) {
      pack_panels(l.w_ih);
      pack_panels(l.w_hh);
    }
  pack_panels(w.dec0_embed_cols);  // (after the projected table, which reads its rows)
  pack_panels(w.combine);
  pack_panels(w.out);
}

}  // namespace s2s
