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

#include "engine.h"

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

// Strict JSON (RFC 8259): throws std::invalid_argument on bad syntax, repeated keys, bad UTF-8.
Json parse_json(const std::string& text);

// CRC-32 (ISO-HDLC, zlib's crc32).
uint32_t crc32(const unsigned char* data, size_t size);

struct Seq2SeqFile {
  EngineConfig config;
  std::string src_tokenizer, tgt_tokenizer;  // "char" or "word"
  bool reverse_source = false;
  std::vector<std::string> src_vocab, tgt_vocab;
  std::map<std::string, Tensor> params;  // float32 parameters by name
};

// Reads and checks a file written by s2sext.Seq2Seq.save.
Seq2SeqFile read_seq2seq_file(const std::string& path);

}  // namespace s2s
