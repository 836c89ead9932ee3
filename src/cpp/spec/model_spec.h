// The model's spec in C++ (docs/model.md, docs/model-format.md): special token ids, attention
// kinds and styles, the configuration and its rules, and the table of parameter names and shapes.
// python/s2sext/spec.py is the same table in Python; tests/test_spec.py holds the two equal.
//
// Letters: V vocabulary, E embedding size, H hidden size (He = an encoder direction's), G = 4H,
// L layers, D directions (1 or 2).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace s2s {

// The special tokens every vocabulary starts with, in this order: their ids are their positions.
constexpr int64_t kPadId = 0, kSosId = 1, kEosId = 2, kUnkId = 3;
constexpr const char* kSpecialTokens[4] = {"<pad>", "<sos>", "<eos>", "<unk>"};

// The tokenizers a model's config names (python/s2sext/spec.py's TOKENIZER_NAMES). A sentencepiece
// side's model is a uint8 tensor of 1 to kMaxSentencePieceBytes bytes: "tokenizer.src.sentencepiece"
// or "tokenizer.tgt.sentencepiece", else (one model both sides share) "tokenizer.sentencepiece".
constexpr const char* kTokenizerNames[3] = {"char", "word", "sentencepiece"};
constexpr uint64_t kMaxSentencePieceBytes = uint64_t(1) << 26;
constexpr const char* kSharedSentencePieceTensor = "tokenizer.sentencepiece";
// "tokenizer.src.sentencepiece" for side "src"
inline std::string sentencepiece_tensor(const std::string& side) { return "tokenizer." + side + ".sentencepiece"; }

enum class AttentionKind { none, dot, scaled_dot, general, concat, location };

// The kind named as in a model's config ("none" for no attention); false if the name is unknown.
bool attention_kind_from_name(const std::string& name, AttentionKind* kind);
const char* attention_kind_name(AttentionKind kind);

struct ModelConfig {
  int64_t src_vocab = 0, tgt_vocab = 0, embed = 0, hidden = 0, layers = 1;
  bool bidirectional = false;
  AttentionKind attention = AttentionKind::dot;
  bool bahdanau = false;       // attention style: false = Luong
  bool input_feeding = false;  // Luong only
  int64_t max_source_length = 0;
  // bridge "concat" (bidirectional, even hidden: H/2 units per direction, the decoder starts from
  // [h_fwd; h_bwd] and attends over the concatenated outputs, no bridge.*), combine_activation
  // "tanh" or "none", concat's query bias attention.b_q.
  bool bridge_concat = false;
  bool combine_tanh = true;
  bool query_bias = false;

  bool has_attention() const { return attention != AttentionKind::none; }
  // Each encoder direction's hidden size: H, or H/2 with bridge "concat".
  int64_t encoder_hidden() const { return bridge_concat ? hidden / 2 : hidden; }
  // The decoder's first-layer input: the embedding, then the context (Bahdanau) or the previous
  // attentional state (input feeding).
  int64_t decoder_input() const { return embed + (has_attention() && (bahdanau || input_feeding) ? hidden : 0); }
};

// The configuration rules of docs/model-format.md ("The Seq2Seq header") that a ModelConfig can
// express: sizes >= 1 (vocabularies >= 5), the attention style's combinations, the version-2
// options' (bridge "concat": bidirectional, even hidden; combine "none": attention; query bias:
// concat), and every parameter's byte count below 2^63 in checked arithmetic (so that no size
// computed from the configuration overflows). Throws std::invalid_argument naming the first rule broken.
void check_model_config(const ModelConfig& config);

// One value of a configuration as its reader found it (a model file's JSON, a Python dict).
struct ConfigValue {
  enum class Kind { absent, null, integer, boolean, string, other };
  Kind kind = Kind::absent;
  int64_t integer = 0;
  bool boolean = false;
  std::string string;
};

// The ModelConfig of a configuration's keys (docs/model-format.md, "The Seq2Seq header"), each
// read through `get`: the sizes, bidirectional, input_feeding, attention (null or a kind's name),
// attention_style, and the version-2 keys bridge, combine_activation and attention_query_bias,
// which take their defaults when absent; then check_model_config. Keys the engine does not use
// (dropout, tokenizers, reverse_source, the version-3 src_lowercase/tgt_lowercase) are the caller's.
// The one reader of both the model file and the bindings: std::invalid_argument naming the key ("config 'bridge' is 'mlp', not ...").
ModelConfig read_model_config(const std::function<ConfigValue(const char* key)>& get);

// text in single quotes, cut after 40 bytes (a value from a file may be any size)
std::string quoted(const std::string& text);

using Shape = std::vector<int64_t>;

// Every parameter's name and shape, in the order of docs/model.md (and of the model file).
// max_layers > 0 stops each LSTM stack after that many layers (layers past the second repeat the
// second's shapes). Call after check_model_config.
std::vector<std::pair<std::string, Shape>> parameter_shapes(const ModelConfig& config, int64_t max_layers = 0);
// The same table one entry at a time, in the same order (a visitor that throws stops it: a
// configuration of 10^7 layers is refused at its first missing parameter, without a table).
void visit_parameters(const ModelConfig& config, const std::function<void(const std::string&, const Shape&)>& visit,
                      int64_t max_layers = 0);

// A float32 parameter as stored in the model file: shape and row-major values.
struct Tensor {
  Shape shape;
  std::vector<float> values;
};

}  // namespace s2s
