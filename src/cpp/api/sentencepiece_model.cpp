#include "api/sentencepiece_model.h"

#include <cstdint>
#include <stdexcept>
#include <string_view>

#include "spec/model_spec.h"

#ifdef S2SEXT_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace s2s {

namespace {

// What a build without the library says when a sentencepiece model's text is asked for.
[[maybe_unused]] const char* const kNoSentencePiece =
    "this model's text is tokenized with sentencepiece, and this build of the s2sext C++ library has no "
    "sentencepiece support: rebuild it with the sentencepiece library installed (Debian/Ubuntu: "
    "libsentencepiece-dev; CMake finds it with pkg-config), or give ids (Translator::greedy, beam)";

// The protocol-buffer wire format (https://protobuf.dev/programming-guides/encoding/), as much of
// it as ModelProto needs: varints, fixed 32/64-bit values and length-delimited fields. Groups
// (wire types 3 and 4, unused by sentencepiece) are refused.
class Wire {
 public:
  explicit Wire(std::string_view bytes) : s_(bytes) {}
  bool done() const { return i_ == s_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i_ >= s_.size()) fail("a varint runs past the end");
      const unsigned char c = static_cast<unsigned char>(s_[i_++]);
      v |= uint64_t(c & 0x7F) << shift;
      if (!(c & 0x80)) return v;
    }
    fail("a varint is longer than 10 bytes");
  }
  // One field's key: (field number, wire type).
  std::pair<uint64_t, int> key() {
    const uint64_t k = varint();
    if ((k >> 3) == 0) fail("a field has number 0");
    return {k >> 3, int(k & 7)};
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > s_.size() - i_) fail("a length-delimited field runs past the end");
    const std::string_view out = s_.substr(i_, size_t(n));
    i_ += size_t(n);
    return out;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); return;
      case 1: advance(8); return;
      case 2: bytes(); return;
      case 5: advance(4); return;
      default: fail("wire type " + std::to_string(wire_type) + " is not used by a sentencepiece model");
    }
  }

 private:
  void advance(size_t n) {
    if (n > s_.size() - i_) fail("a fixed-size field runs past the end");
    i_ += n;
  }
  [[noreturn]] static void fail(const std::string& what) {
    throw std::invalid_argument("not a sentencepiece model (" + what + ")");
  }
  std::string_view s_;
  size_t i_ = 0;
};

// SentencePiece.Type (sentencepiece_model.proto): the pieces that are no vocabulary token.
constexpr uint64_t kUnknownType = 2, kControlType = 3, kUnusedType = 5, kLastType = 6;

std::vector<std::string> vocabulary_of_pieces(std::string_view model) {
  std::vector<std::string> vocab(std::begin(kSpecialTokens), std::end(kSpecialTokens));
  Wire top(model);
  while (!top.done()) {
    const auto [field, wire_type] = top.key();
    if (field != 1) {  // ModelProto.pieces; the specs and self-test data are the library's
      top.skip(wire_type);
      continue;
    }
    if (wire_type != 2) throw std::invalid_argument("not a sentencepiece model (a piece is not a message)");
    Wire entry(top.bytes());
    std::string piece;
    uint64_t type = 1;  // NORMAL, the default
    while (!entry.done()) {
      const auto [number, kind] = entry.key();
      if (number == 1 && kind == 2) {
        piece = std::string(entry.bytes());
      } else if (number == 3 && kind == 0) {
        const uint64_t value = entry.varint();
        if (value >= 1 && value <= kLastType) type = value;  // another value is not a Type: kept as unknown
      } else {
        entry.skip(kind);
      }
    }
    if (type == kUnknownType || type == kControlType || type == kUnusedType) continue;
    bool special = false;
    for (const char* s : kSpecialTokens) special = special || piece == s;
    if (!special) vocab.push_back(std::move(piece));
  }
  return vocab;
}

}  // namespace

#ifdef S2SEXT_WITH_SENTENCEPIECE

struct SentencePieceText::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceText::SentencePieceText(const std::string& model) : impl_(new Impl()) {
  const auto status = impl_->processor.LoadFromSerializedProto(model);
  if (!status.ok()) throw std::invalid_argument("not a sentencepiece model (" + status.ToString() + ")");
}

std::vector<std::string> SentencePieceText::encode(const std::string& text) const {
  std::vector<std::string> pieces;
  const auto status = impl_->processor.Encode(text, &pieces);
  if (!status.ok()) throw std::invalid_argument("sentencepiece cannot encode the text: " + status.ToString());
  return pieces;
}

std::string SentencePieceText::decode(const std::vector<std::string>& pieces) const {
  std::string text;
  const auto status = impl_->processor.Decode(pieces, &text);
  if (!status.ok()) throw std::invalid_argument("sentencepiece cannot decode the pieces: " + status.ToString());
  return text;
}

std::vector<std::string> sentencepiece_vocabulary(const std::string& model) {
  std::vector<std::string> vocab = vocabulary_of_pieces(model);
  const SentencePieceText loaded(model);  // the library's own checks of the rest of the model
  (void)loaded;
  return vocab;
}

#else

struct SentencePieceText::Impl {};

SentencePieceText::SentencePieceText(const std::string&) {}

std::vector<std::string> SentencePieceText::encode(const std::string&) const {
  throw std::runtime_error(kNoSentencePiece);
}

std::string SentencePieceText::decode(const std::vector<std::string>&) const {
  throw std::runtime_error(kNoSentencePiece);
}

std::vector<std::string> sentencepiece_vocabulary(const std::string& model) { return vocabulary_of_pieces(model); }

#endif

SentencePieceText::~SentencePieceText() = default;
SentencePieceText::SentencePieceText(SentencePieceText&&) noexcept = default;
SentencePieceText& SentencePieceText::operator=(SentencePieceText&&) noexcept = default;

}  // namespace s2s
