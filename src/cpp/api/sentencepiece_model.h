// A sentencepiece model stored in an s2sext model file (docs/model-format.md, "The Seq2Seq
// header", rule 5): the vocabulary its pieces make, read from the serialized model by every build, and the
// text <-> pieces work, which needs the sentencepiece library (compiled in when CMake finds it:
// S2SEXT_WITH_SENTENCEPIECE). Without it a Translator still loads and checks such a model and
// decodes ids; encode and decode of text throw std::runtime_error saying what is missing.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace s2s {

// The s2sext vocabulary of a serialized sentencepiece model: the four specials, then the model's
// pieces in id order, leaving out its unknown (type 2), control (3) and unused (5) pieces and any piece
// spelled like a special. The model is read as protocol-buffer wire format (ModelProto.pieces,
// each SentencePiece's piece and type); with the library it must also load as a model. Throws
// std::invalid_argument naming what is wrong.
std::vector<std::string> sentencepiece_vocabulary(const std::string& model);

// Text <-> pieces with one model (the library's encoding and decoding).
class SentencePieceText {
 public:
  // Throws std::invalid_argument if the library refuses the model. Without the library it keeps
  // nothing, and encode and decode throw std::runtime_error naming the library.
  explicit SentencePieceText(const std::string& model);
  ~SentencePieceText();
  SentencePieceText(SentencePieceText&&) noexcept;
  SentencePieceText& operator=(SentencePieceText&&) noexcept;

  std::vector<std::string> encode(const std::string& text) const;
  std::string decode(const std::vector<std::string>& pieces) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace s2s
