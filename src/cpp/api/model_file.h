// Reading the model file (docs/model-format.md) in C++: the container's checks (magic, version,
// trailer, CRC-32, JSON header, tensor table), then a Seq2Seq's header (docs/model.md): its
// configuration, vocabularies and float32 parameters. Every failure throws ModelFileError with the
// path and what is wrong; nothing is allocated from a size the checksum has not vouched for.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "spec/model_spec.h"

namespace s2s {

class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A parsed JSON value (the subset the format uses: null, bool, number, string, array, object).
struct Json {
  enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
  bool boolean = false;
  double number = 0;
  bool integral = false;  // written without fraction or exponent
  int64_t integer = 0;    // its value when integral
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;  // in file order; keys are unique

  const Json* find(const std::string& key) const;
};

// The model file's limits (docs/model-format.md): the JSON header's length, and how deep arrays
// and objects may nest (the header's top-level object is depth 1).
constexpr uint64_t kMaxHeaderBytes = uint64_t(1) << 24;
constexpr int kMaxJsonDepth = 64;

// What parse_json builds. A parse tree costs ~100 bytes per value (a 16 MiB header of `[0,0,...]`
// took about 1 GB), so the model reader (model_header) keeps only what it reads: the top object's
// `tensors` (tensor_table: entries, tensor_entry: scalar members and a shape of dims) and `meta`
// (model_meta: the scalars `kind` and `version`, `config` with scalar members, the vocabularies as
// strings). Every other value (`meta.extra`, a checkpoint's state, a container where the format
// has a scalar) is checked as strictly and kept as its kind only (kind_only: an empty object,
// array or string), and an array stops storing after an element of the wrong kind or 33
// dimensions, which the reader refuses anyway. The verdict is that of the whole tree.
enum class JsonKeep { all, model_header, model_meta, config, scalar, strings, tensor_table, tensor_entry, dims,
                      kind_only };

// Strict JSON (RFC 8259) as the model file restricts it: throws std::invalid_argument on bad
// syntax, repeated keys (found in linear time), bad UTF-8 or lone surrogates, integers outside
// int64, numbers that overflow a double, nesting deeper than kMaxJsonDepth.
Json parse_json(const std::string& text, JsonKeep keep = JsonKeep::all);

// CRC-32 (ISO-HDLC, zlib's crc32).
uint32_t crc32(const unsigned char* data, size_t size);

struct Seq2SeqFile {
  ModelConfig config;
  std::string src_tokenizer, tgt_tokenizer;  // one of kTokenizerNames
  // a "sentencepiece" side's serialized model (its tensor's bytes), checked against its vocabulary
  std::string src_sentencepiece, tgt_sentencepiece;
  bool reverse_source = false;
  // each side's text lowercased (spec/lowercase.h) before it is tokenized: config src_lowercase /
  // tgt_lowercase (version-3 keys; false in a version-1 or -2 file)
  bool src_lowercase = false, tgt_lowercase = false;
  std::vector<std::string> src_vocab, tgt_vocab;
  std::map<std::string, Tensor> params;  // float32 parameters by name
};

// Reads and checks a file written by s2sext.Seq2Seq.save: the container's checks, then the Seq2Seq
// header's (docs/model-format.md); the parameters' presence and shapes are the Engine's to check.
// The work is bounded by the file's size: its preamble, size and trailer are checked before the
// rest is read.
Seq2SeqFile read_seq2seq_file(const std::string& path);

}  // namespace s2s
