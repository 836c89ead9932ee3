// The model's spec: attention kind names, the configuration's rules and the parameter table (model_spec.h).
#include "spec/model_spec.h"

#include <functional>
#include <stdexcept>

namespace s2s {
namespace {

const std::pair<const char*, AttentionKind> kAttentionKinds[] = {
    {"none", AttentionKind::none},         {"dot", AttentionKind::dot},
    {"scaled_dot", AttentionKind::scaled_dot}, {"general", AttentionKind::general},
    {"concat", AttentionKind::concat},     {"location", AttentionKind::location}};

}  // namespace

bool attention_kind_from_name(const std::string& name, AttentionKind* kind) {
  for (const auto& k : kAttentionKinds)
    if (name == k.first) {
      *kind = k.second;
      return true;
    }
  return false;
}

const char* attention_kind_name(AttentionKind kind) {
  for (const auto& k : kAttentionKinds)
    if (kind == k.second) return k.first;
  return "none";
}

std::string quoted(const std::string& text) {
  if (text.size() <= 40) return "'" + text + "'";
  return "'" + text.substr(0, 40) + "...' (" + std::to_string(text.size()) + " bytes)";
}

ModelConfig read_model_config(const std::function<ConfigValue(const char* key)>& get) {
  using Kind = ConfigValue::Kind;
  auto value = [&](const char* key, bool required) {
    ConfigValue v = get(key);
    if (required && v.kind == Kind::absent) throw std::invalid_argument(std::string("config lacks '") + key + "'");
    return v;
  };
  auto integer = [&](const char* key) {
    const ConfigValue v = value(key, true);
    if (v.kind != Kind::integer) throw std::invalid_argument(std::string("config '") + key + "' must be an integer");
    return v.integer;
  };
  // absent (a version-2 key): false
  auto boolean = [&](const char* key, bool required) {
    const ConfigValue v = value(key, required);
    if (v.kind == Kind::absent) return false;
    if (v.kind != Kind::boolean) throw std::invalid_argument(std::string("config '") + key + "' must be true or false");
    return v.boolean;
  };
  // a string naming one of two choices; absent: the first (version-2 keys) unless required
  auto choice = [&](const char* key, const char* first, const char* second, bool required) {
    const ConfigValue v = value(key, required);
    if (v.kind == Kind::absent) return true;
    if (v.kind != Kind::string) throw std::invalid_argument(std::string("config '") + key + "' must be a string");
    if (v.string != first && v.string != second)
      throw std::invalid_argument(std::string("config '") + key + "' is " + quoted(v.string) + ", not '" + first +
                                  "' or '" + second + "'");
    return v.string == first;
  };
  ModelConfig c;
  c.src_vocab = integer("src_vocab_size");
  c.tgt_vocab = integer("tgt_vocab_size");
  c.embed = integer("embed_size");
  c.hidden = integer("hidden_size");
  c.layers = integer("num_layers");
  c.max_source_length = integer("max_source_length");
  c.bidirectional = boolean("bidirectional", true);
  c.input_feeding = boolean("input_feeding", true);
  const ConfigValue att = value("attention", true);
  if (att.kind != Kind::null && (att.kind != Kind::string || att.string == "none"))
    throw std::invalid_argument("config 'attention' must be null or the name of a kind");
  const std::string kind = att.kind == Kind::null ? "none" : att.string;
  if (!attention_kind_from_name(kind, &c.attention))
    throw std::invalid_argument("config 'attention' is " + quoted(kind) + ", not a known kind");
  c.bahdanau = !choice("attention_style", "luong", "bahdanau", true);
  c.bridge_concat = !choice("bridge", "linear", "concat", false);
  c.combine_tanh = choice("combine_activation", "tanh", "none", false);
  c.query_bias = boolean("attention_query_bias", false);
  try {
    check_model_config(c);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("config: ") + e.what());
  }
  return c;
}

void check_model_config(const ModelConfig& c) {
  if (c.src_vocab < 5 || c.tgt_vocab < 5)
    throw std::invalid_argument("src_vocab_size and tgt_vocab_size must be >= 5 (got " + std::to_string(c.src_vocab) +
                                ", " + std::to_string(c.tgt_vocab) + ")");
  if (c.embed < 1 || c.hidden < 1 || c.layers < 1 || c.max_source_length < 1)
    throw std::invalid_argument("embed_size, hidden_size, num_layers and max_source_length must be >= 1");
  const bool attention = c.has_attention();
  if (!attention && (c.bahdanau || c.input_feeding))
    throw std::invalid_argument("attention_style 'bahdanau' and input_feeding need an attention kind");
  if (c.input_feeding && c.bahdanau) throw std::invalid_argument("input_feeding needs attention_style 'luong'");
  if (c.bridge_concat && !(c.bidirectional && c.hidden % 2 == 0))
    throw std::invalid_argument("bridge 'concat' needs bidirectional and an even hidden_size");
  if (!c.combine_tanh && !attention) throw std::invalid_argument("combine_activation 'none' needs an attention kind");
  if (c.query_bias && c.attention != AttentionKind::concat)
    throw std::invalid_argument("attention_query_bias needs attention 'concat'");
  // Every parameter's bytes (float32) below 2^63. Shapes of docs/model.md; each listed shape is
  // the largest of its family (biases and the bridge's [H, 2H] are smaller than [4H, H]; bridge
  // "concat" halves the encoder's sizes).
  const int64_t H = c.hidden, E = c.embed, extra = attention && (c.input_feeding || c.bahdanau) ? H : 0;
  int64_t G = 0, dec_in = 0, enc_in = 0;
  bool ok = !__builtin_mul_overflow(H, int64_t(4), &G) && !__builtin_add_overflow(E, extra, &dec_in) &&
            !__builtin_mul_overflow(H, int64_t(c.bidirectional ? 2 : 1), &enc_in);
  auto fits = [&](int64_t rows, int64_t cols) {
    int64_t n = 0;
    return !__builtin_mul_overflow(rows, cols, &n) && !__builtin_mul_overflow(n, int64_t(sizeof(float)), &n);
  };
  ok = ok && fits(c.src_vocab, E) && fits(c.tgt_vocab, E) && fits(c.tgt_vocab, H) && fits(G, dec_in) && fits(G, H) &&
       (c.layers == 1 || fits(G, enc_in)) && (c.attention != AttentionKind::location || fits(c.max_source_length, H));
  if (!ok) throw std::invalid_argument("the configuration's sizes give a parameter too large to store (2^63 bytes or more)");
}

void visit_parameters(const ModelConfig& c, const std::function<void(const std::string&, const Shape&)>& visit,
                      int64_t max_layers) {
  const int64_t E = c.embed, H = c.hidden, He = c.encoder_hidden(), D = c.bidirectional ? 2 : 1;
  const int64_t L = max_layers > 0 && max_layers < c.layers ? max_layers : c.layers;
  visit("src_embed", {c.src_vocab, E});
  visit("tgt_embed", {c.tgt_vocab, E});
  for (int64_t k = 0; k < L; ++k) {
    const int64_t in = k == 0 ? E : D * He;
    for (const char* suffix : {"", "_reverse"}) {
      if (*suffix && !c.bidirectional) break;
      const std::string p = "encoder.l" + std::to_string(k) + suffix;
      visit(p + ".w_ih", {4 * He, in});
      visit(p + ".w_hh", {4 * He, He});
      visit(p + ".b", {4 * He});
    }
  }
  if (c.bidirectional && !c.bridge_concat) {
    visit("bridge.h.weight", {H, 2 * H});
    visit("bridge.h.bias", {H});
    visit("bridge.c.weight", {H, 2 * H});
    visit("bridge.c.bias", {H});
    if (c.has_attention()) visit("bridge.memory.weight", {H, 2 * H});
  }
  for (int64_t k = 0; k < L; ++k) {
    const std::string p = "decoder.l" + std::to_string(k);
    visit(p + ".w_ih", {4 * H, k == 0 ? c.decoder_input() : H});
    visit(p + ".w_hh", {4 * H, H});
    visit(p + ".b", {4 * H});
  }
  switch (c.attention) {
    case AttentionKind::general:
      visit("attention.w_a", {H, H});
      break;
    case AttentionKind::location:
      visit("attention.w_a", {c.max_source_length, H});
      break;
    case AttentionKind::concat:
      visit("attention.w_q", {H, H});
      visit("attention.w_k", {H, H});
      visit("attention.v", {H});
      if (c.query_bias) visit("attention.b_q", {H});
      break;
    default:
      break;
  }
  if (c.has_attention()) {
    visit("combine.weight", {H, 2 * H});
    visit("combine.bias", {H});
  }
  visit("out.weight", {c.tgt_vocab, H});
  visit("out.bias", {c.tgt_vocab});
}

std::vector<std::pair<std::string, Shape>> parameter_shapes(const ModelConfig& c, int64_t max_layers) {
  std::vector<std::pair<std::string, Shape>> table;
  visit_parameters(c, [&](const std::string& name, const Shape& shape) { table.push_back({name, shape}); }, max_layers);
  return table;
}

}  // namespace s2s
