#include "api/model_file.h"

#include "api/sentencepiece_model.h"
#include "runtime/quantize.h"
#include "spec/utf8.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_set>

namespace s2s {

// ---- JSON ----------------------------------------------------------------------------------------

const Json* Json::find(const std::string& key) const {
  for (const auto& kv : object)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

// A string from the file as an error message quotes it: at most 40 bytes of it, so that a message
// stays short whatever the file holds (spec/model_spec.h).
std::string quote(std::string_view text) { return quoted(std::string(text)); }

// A JSON number as a message shows it: an integer as written, other numbers in %g.
std::string number_text(const Json& v) {
  if (v.integral) return std::to_string(v.integer);
  char text[32];
  std::snprintf(text, sizeof text, "%g", v.number);
  return text;
}

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}

  Json parse(JsonKeep keep) {
    Json v = value(0, keep);
    skip_space();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument("JSON: " + what + " at byte " + std::to_string(i_));
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool take(const char* word) {
    const size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }
  // What a member of an object kept by `keep` keeps (the reader's needs, model_file.h).
  static JsonKeep member_keep(JsonKeep keep, const std::string& key) {
    switch (keep) {
      case JsonKeep::model_header:
        return key == "meta" ? JsonKeep::model_meta : key == "tensors" ? JsonKeep::tensor_table : JsonKeep::kind_only;
      case JsonKeep::model_meta:
        if (key == "kind" || key == "version") return JsonKeep::scalar;
        if (key == "config") return JsonKeep::config;
        return key == "src_vocab" || key == "tgt_vocab" ? JsonKeep::strings : JsonKeep::kind_only;
      case JsonKeep::config:
        return JsonKeep::scalar;
      case JsonKeep::tensor_entry:
        return key == "shape" ? JsonKeep::dims : JsonKeep::scalar;
      default:
        return JsonKeep::all;
    }
  }
  // What the elements of an array kept by `keep` keep.
  static JsonKeep element_keep(JsonKeep keep) {
    switch (keep) {
      case JsonKeep::tensor_table:
        return JsonKeep::tensor_entry;
      case JsonKeep::strings:
      case JsonKeep::dims:
        return JsonKeep::scalar;
      default:
        return JsonKeep::all;
    }
  }
  // Whether an array kept by `keep` stores its next element: the reader refuses an array with an
  // element of the wrong kind (or a shape of more than 32 dimensions), so past the first such
  // element (or 33 dimensions) the rest is only checked.
  static bool store_next(JsonKeep keep, const std::vector<Json>& stored) {
    if (stored.empty()) return true;
    switch (keep) {
      case JsonKeep::tensor_table:
        return stored.back().kind == Json::Kind::object;
      case JsonKeep::strings:
        return stored.back().kind == Json::Kind::string;
      case JsonKeep::dims:
        return stored.size() <= 32;
      default:
        return true;
    }
  }
  // depth: the number of arrays and objects around this value. keep: what to build of it
  // (JsonKeep); a value of another kind than its policy expects is checked as strictly but kept
  // as its kind only (no members, elements or string).
  Json value(int depth, JsonKeep keep) {
    skip_space();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    const char c = s_[i_];
    const bool object_policy = keep == JsonKeep::all || keep == JsonKeep::model_header ||
                               keep == JsonKeep::model_meta || keep == JsonKeep::config ||
                               keep == JsonKeep::tensor_entry;
    const bool array_policy = keep == JsonKeep::all || keep == JsonKeep::tensor_table ||
                              keep == JsonKeep::strings || keep == JsonKeep::dims;
    if ((c == '{' && !object_policy) || (c == '[' && !array_policy)) keep = JsonKeep::kind_only;
    if ((c == '{' || c == '[') && depth + 1 > kMaxJsonDepth)
      fail("nested more than " + std::to_string(kMaxJsonDepth) + " levels deep");
    if (c == '{') {
      v.kind = Json::Kind::object;
      ++i_;
      skip_space();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return v;
      }
      std::vector<std::string> skipped_keys;  // kind_only: the keys, for the repeated-key check
      for (;;) {
        skip_space();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
        std::string key = string();
        skip_space();
        if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
        ++i_;
        if (keep == JsonKeep::kind_only) {
          value(depth + 1, keep);
          skipped_keys.push_back(std::move(key));
        } else {
          const JsonKeep member = member_keep(keep, key);
          v.object.emplace_back(std::move(key), value(depth + 1, member));
        }
        skip_space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') {
          ++i_;
          std::vector<std::string_view> keys;
          keys.reserve(keep == JsonKeep::kind_only ? skipped_keys.size() : v.object.size());
          if (keep == JsonKeep::kind_only)
            keys.assign(skipped_keys.begin(), skipped_keys.end());
          else
            for (const auto& kv : v.object) keys.push_back(kv.first);
          check_unique_keys(keys);
          return v;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = Json::Kind::array;
      ++i_;
      skip_space();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        if (keep == JsonKeep::kind_only || !store_next(keep, v.array))
          value(depth + 1, JsonKeep::kind_only);
        else
          v.array.push_back(value(depth + 1, element_keep(keep)));
        skip_space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return v;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Json::Kind::string;
      v.string = string();
      if (keep == JsonKeep::kind_only) std::string().swap(v.string);
      return v;
    }
    if (take("true")) {
      v.kind = Json::Kind::boolean;
      v.boolean = true;
      return v;
    }
    if (take("false")) {
      v.kind = Json::Kind::boolean;
      return v;
    }
    if (take("null")) return v;
    return number();
  }
  Json number() {
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("bad value");
    if (s_[i_] == '0') ++i_;
    else while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    bool integral = true;
    if (i_ < s_.size() && s_[i_] == '.') {
      integral = false;
      ++i_;
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("bad number");
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("bad number");
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    Json v;
    v.kind = Json::Kind::number;
    const std::string text = s_.substr(start, i_ - start);
    v.number = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(v.number)) fail("number overflows a double");
    if (integral) {
      errno = 0;
      const long long x = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) fail("integer out of range");
      v.integral = true;
      v.integer = x;
    }
    return v;
  }
  // Once per object, after its last member: a hash set over the keys, so an object of n keys
  // costs O(n) (small objects compare pairwise, cheaper than a set).
  void check_unique_keys(const std::vector<std::string_view>& keys) const {
    if (keys.size() <= 8) {
      for (size_t a = 0; a < keys.size(); ++a)
        for (size_t b = a + 1; b < keys.size(); ++b)
          if (keys[a] == keys[b]) fail("repeated key " + quote(keys[b]));
      return;
    }
    std::unordered_set<std::string_view> seen;
    seen.reserve(keys.size());
    for (std::string_view key : keys)
      if (!seen.insert(key).second) fail("repeated key " + quote(key));
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("bad \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string string() {
    ++i_;  // opening quote
    std::string out;
    while (i_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) break;
        const char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xD800 && cp < 0xDC00) {
              if (!take("\\u")) fail("lone surrogate");
              const uint32_t lo = hex4();
              if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
              fail("lone surrogate");
            }
            append_utf8(out, cp);
            break;
          }
          default:
            fail("bad escape");
        }
        continue;
      }
      // raw UTF-8: well-formed sequences only (no overlong forms, surrogates or values past U+10FFFF)
      const int extra = c < 0x80 ? 0 : (c >= 0xC2 && c <= 0xDF) ? 1 : (c >= 0xE0 && c <= 0xEF) ? 2
                        : (c >= 0xF0 && c <= 0xF4) ? 3 : -1;
      if (extra < 0 || i_ + static_cast<size_t>(extra) >= s_.size()) fail("invalid UTF-8");
      const unsigned char c1 = static_cast<unsigned char>(s_[i_ + (extra ? 1 : 0)]);
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
        fail("invalid UTF-8");
      for (int k = 1; k <= extra; ++k)
        if ((static_cast<unsigned char>(s_[i_ + k]) >> 6) != 2) fail("invalid UTF-8");
      out.append(s_, i_, static_cast<size_t>(extra) + 1);
      i_ += static_cast<size_t>(extra) + 1;
    }
    fail("unterminated string");
  }

  const std::string& s_;
  size_t i_ = 0;
};

uint64_t read_u64(const unsigned char* p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}
uint32_t read_u32(const unsigned char* p) {
  uint32_t v = 0;
  for (int k = 3; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

}  // namespace

Json parse_json(const std::string& text, JsonKeep keep) { return JsonParser(text).parse(keep); }

uint32_t crc32(const unsigned char* data, size_t size) {
  static uint32_t table[256];
  static bool ready = [] {
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[n] = c;
    }
    return true;
  }();
  (void)ready;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// ---- the container and the Seq2Seq header ---------------------------------------------------------


namespace {

constexpr unsigned char kMagic[8] = {'S', '2', 'S', 'X', 'M', 'D', 'L', 0};
constexpr uint64_t kPreamble = 24, kTrailer = 16;
// Format version 1: no int8 tensor; 2: int8 (dtype "i8") tensors allowed (docs/model-format.md).
constexpr uint32_t kInt8FormatVersion = 2;
// an int8 matrix NAME's row scales are the float32 tensor NAME + kScaleSuffix
constexpr const char* kScaleSuffix = ".scale";

struct Failure {
  const std::string& path;
  ModelFileError operator()(const std::string& what) const { return ModelFileError("model file '" + path + "': " + what); }
};

// Checks 1-3 of docs/model-format.md from the first bytes (head_n of them, at most 24), the file's
// size (-1: not known yet) and its last 16 bytes (nullptr when it has fewer than 40).
void check_ends(const Failure& fail, const unsigned char* head, size_t head_n, int64_t size, const unsigned char* tail) {
  if (head_n < 8 || std::memcmp(head, kMagic, 8) != 0) {
    if (head_n < 8 && std::memcmp(head, kMagic, head_n) == 0) throw fail("truncated");
    throw fail("not an s2sext model file");
  }
  if (head_n < kPreamble) throw fail("truncated");
  const uint32_t version = read_u32(head + 8);
  if (version != 1 && version != kInt8FormatVersion)
    throw fail("unsupported format version " + std::to_string(version) + "; this reader supports versions 1 and 2");
  if (size < 0) return;
  const uint64_t J = read_u64(head + 16), n = uint64_t(size);
  if (J > n || n - J < kPreamble + kTrailer) {  // 24 + J + 16 > size, without overflow
    if (tail && std::memcmp(tail + 12, "S2SX", 4) == 0 && read_u64(tail) == n - kTrailer)
      throw fail("corrupted (header length " + std::to_string(J) + " exceeds the file)");
    throw fail("truncated (the header length " + std::to_string(J) + " needs more than the file's " + std::to_string(n) +
               " bytes)");
  }
  if (J > kMaxHeaderBytes)
    throw fail("corrupted (header length " + std::to_string(J) + " is over the limit of " +
               std::to_string(kMaxHeaderBytes) + " bytes)");
}

// The whole file, read only after check_ends has passed on its first and last bytes and its size
// (a foreign or lying file costs O(1) to refuse; a pipe or a device, which has no size, is refused
// after its first 24 bytes: reading it to its end could take without bound).
std::vector<unsigned char> read_file(const Failure& fail) {
  std::ifstream in(fail.path, std::ios::binary);
  if (!in) throw fail("cannot be opened");
  unsigned char head[kPreamble];
  in.read(reinterpret_cast<char*>(head), kPreamble);
  const size_t head_n = size_t(in.gcount());
  check_ends(fail, head, head_n, -1, nullptr);
  std::error_code error;
  if (!std::filesystem::is_regular_file(fail.path, error))
    throw fail("is not a regular file (a pipe or a device); a model is read from a file");
  in.clear();
  in.seekg(0, std::ios::end);
  const std::streamoff end = in ? std::streamoff(in.tellg()) : -1;
  if (end < 0) throw fail("cannot be read (its size is unknown)");
  std::vector<unsigned char> bytes;
  unsigned char tail[kTrailer];
  bool have_tail = false;
  if (uint64_t(end) >= kPreamble + kTrailer) {
    in.seekg(end - std::streamoff(kTrailer));
    in.read(reinterpret_cast<char*>(tail), kTrailer);
    have_tail = in.gcount() == std::streamsize(kTrailer);
  }
  check_ends(fail, head, head_n, int64_t(end), have_tail ? tail : nullptr);
  bytes.resize(size_t(end));
  in.clear();
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(end));
  bytes.resize(size_t(in.gcount()));  // a file that shrank meanwhile then reads as truncated
  return bytes;
}

// The config keys of the Seq2Seq header by the version that adds them (docs/model-format.md): a
// version-V header has exactly the keys of versions 1 to V; a key of a later version takes its default.
// Version 3 exists because version-2 files were written before the lowercase keys did.
struct ConfigKey {
  const char* name;
  int64_t version;
};
const ConfigKey kConfigKeys[] = {
    {"src_vocab_size", 1},  {"tgt_vocab_size", 1},      {"embed_size", 1},           {"hidden_size", 1},
    {"num_layers", 1},      {"bidirectional", 1},       {"dropout", 1},              {"attention", 1},
    {"attention_style", 1}, {"input_feeding", 1},       {"max_source_length", 1},    {"src_tokenizer", 1},
    {"tgt_tokenizer", 1},   {"reverse_source", 1},
    {"bridge", 2},          {"combine_activation", 2},  {"attention_query_bias", 2},
    {"src_lowercase", 3},   {"tgt_lowercase", 3}};
constexpr int64_t kLatestHeaderVersion = 3;

// The int8 matrices of a file (docs/model-format.md, "int8 parameters"), in the parameter table's
// order, stopping at the first parameter the file lacks (the Engine reports it), so the work is
// bounded by the file: each int8 parameter is a matrix of its table shape with float32 scales
// NAME.scale [N]; each row is a fixed point of the int8 rule (runtime/quantize.h: no -128, a finite
// scale >= +0 whose q * scale stays finite, and quantizing the dequantized row gives the same q and
// scale bit for bit); a float32 parameter has no NAME.scale. The dequantized values replace the
// scales in params.
void read_int8_parameters(const Failure& fail, Seq2SeqFile& out, const std::set<std::string>& names,
                          const std::map<std::string, std::string>& dtypes,
                          const std::map<std::string, std::pair<Shape, const unsigned char*>>& int8_tensors) {
  struct Stop {};
  std::vector<std::string> scales;
  try {
    visit_parameters(out.config, [&](const std::string& name, const Shape& shape) {
      if (!names.count(name)) throw Stop{};
      const std::string scale_name = name + kScaleSuffix;
      const auto q = int8_tensors.find(name);
      if (q == int8_tensors.end()) {
        if (names.count(scale_name))
          throw fail("tensor " + quote(scale_name) + " holds int8 scales, but parameter " + quote(name) + " is " +
                     dtypes.at(name));
        return;
      }
      if (shape.size() != 2)
        throw fail("parameter " + quote(name) + " is int8; only matrices ([N, K]) may be stored in int8");
      if (q->second.first != shape) throw fail("parameter " + quote(name) + " (int8) has the wrong shape");
      const auto scale = out.params.find(scale_name);
      if (!names.count(scale_name))
        throw fail("parameter " + quote(name) + " is int8 and the file lacks its scales " + quote(scale_name));
      if (scale == out.params.end() || scale->second.shape != Shape{shape[0]})
        throw fail("tensor " + quote(scale_name) + " must be float32 [N], the scales of the int8 matrix " + quote(name));
      const int64_t N = shape[0], K = shape[1];
      const int8_t* data = reinterpret_cast<const int8_t*>(q->second.second);
      Tensor values;
      values.shape = shape;
      values.values.resize(size_t(N * K));  // N * K bytes of the file: bounded by its size
      std::vector<int8_t> again(static_cast<size_t>(K));
      for (int64_t n = 0; n < N; ++n) {
        const int8_t* row = data + n * K;
        const float s = scale->second.values[size_t(n)];
        const std::string where = "parameter " + quote(name) + " row " + std::to_string(n);
        if (std::find(row, row + K, int8_t(-128)) != row + K) throw fail(where + " holds -128; int8 values are in [-127, 127]");
        if (!std::isfinite(s) || std::signbit(s)) throw fail(where + ": its scale is not a finite float32 >= +0.0");
        float* x = values.values.data() + n * K;
        dequantize_int8_row(row, K, s, x);
        for (int64_t k = 0; k < K; ++k)
          if (!std::isfinite(x[k])) throw fail(where + ": q * scale overflows float32");
        const float s_again = int8_row_scale(x, K);
        quantize_int8_row(x, K, s_again, again.data());
        if (std::memcmp(&s_again, &s, 4) != 0 || std::memcmp(again.data(), row, size_t(K)) != 0)
          throw fail(where + " is not as the int8 rule stores it (its largest |q| must be 127, or the row all 0 with "
                     "scale 0)");
      }
      out.params[name] = std::move(values);
      scales.push_back(scale_name);
    });
  } catch (const Stop&) {
  }
  for (const std::string& name : scales) out.params.erase(name);
}

}  // namespace

Seq2SeqFile read_seq2seq_file(const std::string& path) {
  const Failure fail{path};
  const std::vector<unsigned char> bytes = read_file(fail);
  const uint64_t size = bytes.size();
  check_ends(fail, bytes.data(), size_t(std::min<uint64_t>(size, kPreamble)), int64_t(size),
             size >= kPreamble + kTrailer ? &bytes[size - kTrailer] : nullptr);
  if (std::memcmp(&bytes[size - 4], "S2SX", 4) != 0 || read_u64(&bytes[size - 16]) != size - 16)
    throw fail("truncated or corrupted (its trailer does not match its size, " + std::to_string(size) + " bytes)");
  const uint64_t E = size - 16;
  if (crc32(bytes.data(), E) != read_u32(&bytes[size - 8])) throw fail("corrupted (checksum mismatch)");
  if (read_u32(&bytes[12]) != 0) throw fail("corrupted (reserved field is not 0)");
  const uint64_t J = read_u64(&bytes[16]);  // 24 + J <= E: check_ends
  const uint64_t D = (24 + J + 63) / 64 * 64;
  if (D > E) throw fail("corrupted (data section starts past its end)");
  Json top;
  try {
    top = parse_json(std::string(reinterpret_cast<const char*>(&bytes[24]), J), JsonKeep::model_header);
  } catch (const std::invalid_argument& e) {
    throw fail(std::string("corrupted header: ") + e.what());
  }
  const Json* tensors = top.find("tensors");
  const Json* meta = top.find("meta");
  if (top.kind != Json::Kind::object || top.object.size() != 2 || !tensors || !meta ||
      tensors->kind != Json::Kind::array || meta->kind != Json::Kind::object)
    throw fail("corrupted header (expected an object with 'tensors' and 'meta')");

  // the Seq2Seq header (docs/model-format.md, "The Seq2Seq header")
  auto meta_get = [&](const Json& obj, const char* key, Json::Kind kind) -> const Json& {
    const Json* v = obj.find(key);
    if (!v || v->kind != kind) throw fail(std::string("not a Seq2Seq model: '") + key + "' is missing or of the wrong type");
    return *v;
  };
  const Json& kind = meta_get(*meta, "kind", Json::Kind::string);
  if (kind.string != "s2sext-seq2seq") throw fail("not a Seq2Seq model (kind " + quote(kind.string) + ")");
  const Json& ver = meta_get(*meta, "version", Json::Kind::number);
  if (!ver.integral || ver.integer < 1 || ver.integer > kLatestHeaderVersion)
    throw fail("Seq2Seq header version " + number_text(ver) + " is not supported (expected 1, 2 or 3)");
  const Json& cfg = meta_get(*meta, "config", Json::Kind::object);
  size_t n_keys = 0;
  bool exact = true;  // keys are unique: the count and each key
  for (const ConfigKey& key : kConfigKeys)
    if (key.version <= ver.integer) {
      ++n_keys;
      exact = exact && cfg.find(key.name);
    }
  exact = exact && cfg.object.size() == n_keys;
  if (!exact) {
    std::string keys;
    size_t listed = 0;
    for (const auto& kv : cfg.object)
      if (listed++ < 8) keys += (keys.empty() ? "" : ", ") + quote(kv.first);
    if (listed > 8) keys += ", ... (" + std::to_string(listed) + " keys)";
    throw fail("config must have exactly the " + std::to_string(n_keys) + " keys of a version " +
               std::to_string(ver.integer) + " header (docs/model-format.md); it has " + keys);
  }
  Seq2SeqFile out;
  try {
    out.config = read_model_config([&](const char* key) {
      ConfigValue v;
      const Json* j = cfg.find(key);
      if (!j) return v;
      switch (j->kind) {
        case Json::Kind::null: v.kind = ConfigValue::Kind::null; break;
        case Json::Kind::boolean: v.kind = ConfigValue::Kind::boolean; v.boolean = j->boolean; break;
        case Json::Kind::string: v.kind = ConfigValue::Kind::string; v.string = j->string; break;
        case Json::Kind::number:
          v.kind = j->integral ? ConfigValue::Kind::integer : ConfigValue::Kind::other;
          v.integer = j->integer;
          break;
        default: v.kind = ConfigValue::Kind::other; break;
      }
      return v;
    });
  } catch (const std::invalid_argument& e) {
    throw fail(e.what());
  }
  out.reverse_source = meta_get(cfg, "reverse_source", Json::Kind::boolean).boolean;
  // the engine does not use them: read here, as reverse_source (versions 1 and 2: absent, false)
  for (auto [key, dest] : {std::make_pair("src_lowercase", &out.src_lowercase),
                           std::make_pair("tgt_lowercase", &out.tgt_lowercase)}) {
    const Json* v = cfg.find(key);
    if (v && v->kind != Json::Kind::boolean) throw fail(std::string("config '") + key + "' must be true or false");
    *dest = v && v->boolean;
  }
  const double dropout = meta_get(cfg, "dropout", Json::Kind::number).number;
  if (!(dropout >= 0 && dropout < 1)) throw fail("config 'dropout' must be a number in [0, 1)");
  out.src_tokenizer = meta_get(cfg, "src_tokenizer", Json::Kind::string).string;
  out.tgt_tokenizer = meta_get(cfg, "tgt_tokenizer", Json::Kind::string).string;
  for (const std::string* t : {&out.src_tokenizer, &out.tgt_tokenizer})
    if (std::find(std::begin(kTokenizerNames), std::end(kTokenizerNames), *t) == std::end(kTokenizerNames))
      throw fail("tokenizer " + quote(*t) + " is not 'char', 'word' or 'sentencepiece'");
  for (auto [key, dest, size] : {std::make_tuple("src_vocab", &out.src_vocab, out.config.src_vocab),
                                 std::make_tuple("tgt_vocab", &out.tgt_vocab, out.config.tgt_vocab)}) {
    const Json& list = meta_get(*meta, key, Json::Kind::array);
    // (the kinds first: the parser stores no element past a non-string, JsonKeep::strings)
    for (const Json& t : list.array)
      if (t.kind != Json::Kind::string) throw fail(std::string(key) + " holds a non-string");
    if (int64_t(list.array.size()) != size)
      throw fail(std::string(key) + " has " + std::to_string(list.array.size()) + " tokens; the configuration says " +
                 std::to_string(size));
    for (const Json& t : list.array) {
      if (t.string.empty()) throw fail(std::string(key) + " holds an empty token");
      dest->push_back(t.string);
    }
    for (int k = 0; k < 4; ++k)
      if ((*dest)[k] != kSpecialTokens[k]) throw fail(std::string(key) + " does not start with <pad> <sos> <eos> <unk>");
    std::unordered_set<std::string_view> seen;
    seen.reserve(dest->size());
    for (const std::string& t : *dest)
      if (!seen.insert(t).second) throw fail(std::string(key) + " holds the token " + quote(t) + " twice");
  }

  // the tensor table: every float32 tensor is copied into params, the uint8 tensors that may hold a
  // sentencepiece model into blobs (other dtypes are checked, not read); the Engine then checks the
  // parameters' presence and shapes
  std::map<std::string, std::pair<std::vector<int64_t>, std::string>> blobs;  // name -> (shape, bytes)
  std::map<std::string, std::pair<Shape, const unsigned char*>> int8_tensors;  // name -> (shape, data)
  std::map<std::string, std::string> dtypes;  // name -> dtype code, of every tensor
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  std::set<std::string> names;
  const uint32_t format_version = read_u32(&bytes[8]);
  for (const Json& t : tensors->array) {
    const Json* name = t.find("name");
    const Json* dtype = t.find("dtype");
    const Json* shape = t.find("shape");
    const Json* offset = t.find("offset");
    const Json* nbytes = t.find("nbytes");
    if (t.kind != Json::Kind::object || t.object.size() != 5 || !name || name->kind != Json::Kind::string ||
        !dtype || dtype->kind != Json::Kind::string || !shape || shape->kind != Json::Kind::array || !offset ||
        !offset->integral || !nbytes || !nbytes->integral)
      throw fail("corrupted tensor table");
    if (name->string.empty()) throw fail("corrupted tensor table (a tensor has an empty name)");
    uint64_t itemsize = dtype->string == "f32" || dtype->string == "i32" ? 4
                        : dtype->string == "f64" || dtype->string == "i64" ? 8
                        : dtype->string == "u16" ? 2 : dtype->string == "u8" || dtype->string == "i8" ? 1 : 0;
    if (!itemsize) throw fail("tensor " + quote(name->string) + " has unknown dtype " + quote(dtype->string));
    if (dtype->string == "i8" && format_version < kInt8FormatVersion)
      throw fail("tensor " + quote(name->string) + " has dtype 'i8', which a version-1 file cannot hold");
    if (shape->array.size() > 32) throw fail("tensor " + quote(name->string) + " has more than 32 dimensions");
    if (!names.insert(name->string).second) throw fail("tensor " + quote(name->string) + " appears twice");
    dtypes.emplace(name->string, dtype->string);
    Tensor tensor;
    // the product of the non-zero dimensions times the itemsize must stay below 2^63
    const uint64_t limit = uint64_t(std::numeric_limits<int64_t>::max()) / itemsize;
    uint64_t count = 1, nonzero = 1;
    for (const Json& d : shape->array) {
      if (!d.integral || d.integer < 0) throw fail("tensor " + quote(name->string) + " has a bad shape");
      tensor.shape.push_back(d.integer);
      if (d.integer == 0) {
        count = 0;
        continue;
      }
      if (nonzero > limit / uint64_t(d.integer)) throw fail("tensor " + quote(name->string) + " is too large");
      nonzero *= uint64_t(d.integer);
      count *= uint64_t(d.integer);
    }
    if (offset->integer < 0 || offset->integer % 64 || nbytes->integer < 0 ||
        uint64_t(nbytes->integer) != count * itemsize || uint64_t(offset->integer) > E - D ||
        uint64_t(nbytes->integer) > E - D - uint64_t(offset->integer))
      throw fail("tensor " + quote(name->string) + " lies outside the data section or has a wrong size");
    spans.emplace_back(uint64_t(offset->integer), uint64_t(nbytes->integer));
    if (dtype->string == "u8" && (name->string == kSharedSentencePieceTensor ||
                                  name->string == sentencepiece_tensor("src") ||
                                  name->string == sentencepiece_tensor("tgt"))) {
      const char* start = reinterpret_cast<const char*>(&bytes[D + uint64_t(offset->integer)]);
      blobs.emplace(name->string, std::make_pair(tensor.shape, std::string(start, size_t(count))));
    }
    if (dtype->string == "i8") int8_tensors.emplace(name->string, std::make_pair(tensor.shape, &bytes[D + uint64_t(offset->integer)]));
    if (dtype->string != "f32") continue;
    tensor.values.resize(count);
    const unsigned char* src = &bytes[D + uint64_t(offset->integer)];
    for (uint64_t i = 0; i < count; ++i) {  // little-endian float32, whatever this machine's order
      const uint32_t bits = read_u32(src + 4 * i);
      std::memcpy(&tensor.values[i], &bits, 4);
    }
    out.params.emplace(name->string, std::move(tensor));
  }
  std::sort(spans.begin(), spans.end());
  uint64_t end = 0;
  for (const auto& s : spans) {
    if (s.first < end) throw fail("corrupted (tensors overlap)");
    end = s.first + s.second;
  }
  if (D + end != E) throw fail("corrupted (the data section does not end at the last tensor)");
  read_int8_parameters(fail, out, names, dtypes, int8_tensors);

  // a sentencepiece side's model (docs/model-format.md, "The Seq2Seq header", rule 5)
  for (auto [side, tokenizer, vocab, model] :
       {std::make_tuple("src", &out.src_tokenizer, &out.src_vocab, &out.src_sentencepiece),
        std::make_tuple("tgt", &out.tgt_tokenizer, &out.tgt_vocab, &out.tgt_sentencepiece)}) {
    if (*tokenizer != "sentencepiece") continue;
    std::string tensor_name = sentencepiece_tensor(side);
    if (!names.count(tensor_name)) tensor_name = kSharedSentencePieceTensor;
    if (!names.count(tensor_name))
      throw fail(std::string(side) + "_tokenizer is 'sentencepiece' and the file holds neither the tensor '" +
                 sentencepiece_tensor(side) + "' nor '" + kSharedSentencePieceTensor + "'");
    const auto blob = blobs.find(tensor_name);
    if (blob == blobs.end() || blob->second.first.size() != 1 || blob->second.second.empty() ||
        blob->second.second.size() > kMaxSentencePieceBytes)
      throw fail("tensor '" + tensor_name + "' is not a sentencepiece model: 1 to " +
                 std::to_string(kMaxSentencePieceBytes) + " uint8 bytes [n]");
    std::vector<std::string> pieces;
    try {
      pieces = sentencepiece_vocabulary(blob->second.second);
    } catch (const std::invalid_argument& e) {
      throw fail("tensor '" + tensor_name + "': " + e.what());
    }
    if (pieces != *vocab)
      throw fail(std::string(side) + "_vocab is not the vocabulary of the sentencepiece model '" + tensor_name +
                 "' (its pieces but the control, unknown and unused ones, after the four specials)");
    *model = blob->second.second;
  }
  return out;
}

}  // namespace s2s
