// s2sext::Translator (s2sext.h): the model file, the tokenizers and vocabularies, and the engine.
#include <algorithm>
#include <stdexcept>
#include <unordered_map>

#include "engine/engine.h"
#include "api/model_file.h"
#include "api/s2sext.h"
#include "api/sentencepiece_model.h"
#include "spec/lowercase.h"

namespace s2sext {

namespace {

using s2s::kEosId;
using s2s::kPadId;
using s2s::kSosId;
using s2s::kUnkId;
constexpr int64_t kPad = kPadId, kSos = kSosId, kEos = kEosId, kUnk = kUnkId;

// UTF-8 text -> code points as strings (Python's str iterates code points).
std::vector<std::string> utf8_chars(const std::string& text) {
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > text.size()) throw std::invalid_argument("text is not valid UTF-8");
    out.push_back(text.substr(i, n));
    i += n;
  }
  return out;
}

// Python's str.split() separators: ASCII whitespace, \x1c-\x1f, and the Unicode spaces.
bool is_space(const std::string& ch) {
  if (ch.size() == 1) {
    const unsigned char c = static_cast<unsigned char>(ch[0]);
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  }
  static const char* const spaces[] = {"\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81",
                                       "\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85",
                                       "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89",
                                       "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf",
                                       "\xe2\x81\x9f", "\xe3\x80\x80"};
  for (const char* s : spaces)
    if (ch == s) return true;
  return false;
}

// The char and word tokenizers (python/s2sext/text.py); sentencepiece's is SentencePieceText.
std::vector<std::string> tokenize(const std::string& tokenizer, const std::string& text) {
  const std::vector<std::string> chars = utf8_chars(text);
  if (tokenizer == "char") return chars;
  std::vector<std::string> words;
  std::string word;
  for (const std::string& ch : chars) {
    if (is_space(ch)) {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += ch;
    }
  }
  if (!word.empty()) words.push_back(word);
  return words;
}

}  // namespace

struct Translator::Impl {
  std::unique_ptr<s2s::Engine> engine;
  s2s::Seq2SeqFile file;
  std::unordered_map<std::string, int64_t> src_index;
  // a sentencepiece side's text <-> pieces (null for char and word sides)
  std::unique_ptr<s2s::SentencePieceText> src_pieces, tgt_pieces;
};

Translator::Translator() : impl_(new Impl()) {}
Translator::~Translator() = default;
Translator::Translator(Translator&&) noexcept = default;
Translator& Translator::operator=(Translator&&) noexcept = default;

Translator Translator::load(const std::string& path, const std::string& dtype) {
  if (dtype != "float32" && dtype != "bfloat16" && dtype != "int8")
    throw std::invalid_argument("dtype must be \"float32\", \"bfloat16\" or \"int8\", got \"" + dtype + "\"");
  Translator t;
  t.impl_->file = s2s::read_seq2seq_file(path);
  const s2s::Seq2SeqFile& f = t.impl_->file;
  try {
    t.impl_->engine.reset(new s2s::Engine(f.config, f.params,
                                          dtype == "bfloat16" ? s2s::WeightType::bfloat16
                                          : dtype == "int8"   ? s2s::WeightType::int8
                                                              : s2s::WeightType::float32));
  } catch (const std::invalid_argument& e) {
    throw s2s::ModelFileError("model file '" + path + "': " + e.what());
  }
  t.impl_->file.params.clear();  // the engine holds its own prepared copy
  for (auto [model, pieces] : {std::make_pair(&t.impl_->file.src_sentencepiece, &t.impl_->src_pieces),
                               std::make_pair(&t.impl_->file.tgt_sentencepiece, &t.impl_->tgt_pieces)})
    if (!model->empty()) {
      try {
        pieces->reset(new s2s::SentencePieceText(*model));
      } catch (const std::invalid_argument& e) {
        throw s2s::ModelFileError("model file '" + path + "': " + e.what());
      }
    }
  for (size_t i = 0; i < f.src_vocab.size(); ++i) t.impl_->src_index.emplace(f.src_vocab[i], int64_t(i));
  return t;
}

std::vector<int64_t> Translator::encode(const std::string& text) const {
  // a lowercasing source side reads the text as Python's tokenizers do (text.py, lowercase=True)
  const std::string read = impl_->file.src_lowercase ? s2s::lowercase_utf8(text) : text;
  std::vector<std::string> tokens =
      impl_->src_pieces ? impl_->src_pieces->encode(read) : tokenize(impl_->file.src_tokenizer, read);
  if (tokens.empty()) throw std::invalid_argument("the text has no tokens");
  if (impl_->file.reverse_source) std::reverse(tokens.begin(), tokens.end());
  std::vector<int64_t> ids;
  for (const std::string& t : tokens) {
    auto it = impl_->src_index.find(t);
    ids.push_back(it == impl_->src_index.end() ? kUnk : it->second);
  }
  return ids;
}

std::string Translator::decode(const std::vector<int64_t>& ids) const {
  const auto& vocab = impl_->file.tgt_vocab;
  std::vector<std::string> tokens;
  for (int64_t id : ids) {
    if (id == kEos) break;
    if (id == kPad || id == kSos) continue;
    if (id < 0 || id >= int64_t(vocab.size())) throw std::invalid_argument("id " + std::to_string(id) + " is not in the vocabulary");
    tokens.push_back(vocab[static_cast<size_t>(id)]);
  }
  if (impl_->tgt_pieces) return impl_->tgt_pieces->decode(tokens);
  const std::string sep = impl_->file.tgt_tokenizer == "word" ? " " : "";
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) out += (i ? sep : "") + tokens[i];
  return out;
}

namespace {
void pad(const std::vector<std::vector<int64_t>>& sources, std::vector<int64_t>& src, std::vector<int64_t>& lengths,
         int64_t& S) {
  if (sources.empty()) throw std::invalid_argument("no sources");
  S = 0;
  for (const auto& s : sources) {
    if (s.empty()) throw std::invalid_argument("a source is empty");
    S = std::max<int64_t>(S, int64_t(s.size()));
  }
  src.assign(sources.size() * size_t(S), kPad);
  for (size_t b = 0; b < sources.size(); ++b) {
    std::copy(sources[b].begin(), sources[b].end(), src.begin() + int64_t(b) * S);
    lengths.push_back(int64_t(sources[b].size()));
  }
}
}  // namespace

std::vector<std::vector<int64_t>> Translator::greedy(const std::vector<std::vector<int64_t>>& sources,
                                                     int64_t max_length, int64_t min_length) const {
  std::vector<int64_t> src, lengths;
  int64_t S = 0;
  pad(sources, src, lengths, S);
  const int64_t B = int64_t(sources.size());
  const s2s::SearchOptions options{1, max_length, min_length, 1, 0.0, false};
  const s2s::GreedyResult found = impl_->engine->greedy(src.data(), lengths.data(), B, S, options);
  const int64_t T = found.steps;
  const std::vector<int64_t>& out = found.tokens;
  std::vector<std::vector<int64_t>> result(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {  // up to and including <eos> (a model may emit <pad> as a token)
      const int64_t id = out[size_t(b * T + t)];
      result[size_t(b)].push_back(id);
      if (id == kEos) break;
    }
  return result;
}

std::vector<std::vector<Hypothesis>> Translator::beam(const std::vector<std::vector<int64_t>>& sources,
                                                      int64_t beam_size, int64_t max_length, int64_t min_length,
                                                      int64_t n_best, double length_penalty) const {
  std::vector<int64_t> src, lengths;
  int64_t S = 0;
  pad(sources, src, lengths, S);
  const s2s::SearchOptions options{beam_size, max_length, min_length, n_best, length_penalty, false};
  const auto found = impl_->engine->beam(src.data(), lengths.data(), int64_t(sources.size()), S, options);
  std::vector<std::vector<Hypothesis>> result;
  for (const auto& hyps : found) {
    std::vector<Hypothesis> r;
    for (const auto& h : hyps) r.push_back(Hypothesis{h.tokens, h.score, h.log_prob, {}});
    result.push_back(std::move(r));
  }
  return result;
}

std::string Translator::translate(const std::string& text, int64_t beam_size, int64_t max_length) const {
  const std::vector<std::vector<int64_t>> sources{encode(text)};
  if (beam_size <= 1) return decode(greedy(sources, max_length)[0]);
  const auto hyps = beam(sources, beam_size, max_length)[0];
  return hyps.empty() ? std::string() : decode(hyps[0].tokens);  // no hypothesis: nothing to say
}

std::vector<std::vector<Hypothesis>> Translator::generate(const std::vector<std::vector<int64_t>>& sources,
                                                          const GenerateOptions& o) const {
  std::vector<int64_t> src, lengths;
  int64_t S = 0;
  pad(sources, src, lengths, S);
  s2s::SearchOptions options{o.beam_size, o.max_length, o.min_length, o.n_best, o.length_penalty, false};
  options.coverage_penalty = o.coverage_penalty;
  options.no_repeat_ngram_size = o.no_repeat_ngram_size;
  options.target_prefix = o.target_prefix;
  options.sampling_temperature = o.sampling_temperature;
  options.sampling_topk = o.sampling_topk;
  options.sampling_topp = o.sampling_topp;
  options.seed = o.seed;
  options.return_token_scores = o.return_token_scores;
  const auto found = impl_->engine->generate(src.data(), lengths.data(), int64_t(sources.size()), S, options);
  std::vector<std::vector<Hypothesis>> result;
  for (const auto& hyps : found) {
    std::vector<Hypothesis> r;
    for (const auto& h : hyps) r.push_back(Hypothesis{h.tokens, h.score, h.log_prob, h.token_scores});
    result.push_back(std::move(r));
  }
  return result;
}

std::string Translator::translate(const std::string& text, const GenerateOptions& options) const {
  const auto hyps = generate({encode(text)}, options)[0];
  return hyps.empty() ? std::string() : decode(hyps[0].tokens);
}

}  // namespace s2sext
