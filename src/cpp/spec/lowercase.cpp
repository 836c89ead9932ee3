// The lowercasing rule of lowercase.h over the generated table of runs (lowercase_table.inc).
#include "spec/lowercase.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <stdexcept>

#include "spec/utf8.h"

namespace s2s {

namespace {

struct CaseRun {
  uint32_t first, last;
  int32_t delta;
  uint32_t stride;
};

constexpr CaseRun kRuns[] = {
#include "spec/lowercase_table.inc"
};

// U+0130 (capital I with dot above) is the one code point whose lowercase is two: i + U+0307.
constexpr uint32_t kCapitalIWithDot = 0x130;

uint32_t lowercase_code_point(uint32_t cp) {
  const CaseRun* end = std::end(kRuns);
  const CaseRun* run = std::upper_bound(std::begin(kRuns), end, cp,
                                        [](uint32_t c, const CaseRun& r) { return c < r.first; });
  if (run == std::begin(kRuns)) return cp;
  --run;  // the last run starting at or before cp (the generator checks that runs do not overlap)
  if (cp > run->last || (cp - run->first) % run->stride != 0) return cp;
  return static_cast<uint32_t>(static_cast<int64_t>(cp) + run->delta);
}

}  // namespace

const char* lowercase_unicode_version() { return S2S_LOWERCASE_UNICODE_VERSION; }

std::string lowercase_utf8(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    const size_t n = lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > text.size()) throw std::invalid_argument("text is not valid UTF-8");
    uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const unsigned char byte = static_cast<unsigned char>(text[i + k]);
      if ((byte >> 6) != 2) throw std::invalid_argument("text is not valid UTF-8");
      cp = (cp << 6) | (byte & 0x3F);
    }
    static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};  // shorter forms are overlong
    if (cp < kSmallest[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      throw std::invalid_argument("text is not valid UTF-8");
    if (cp == kCapitalIWithDot) {
      out += "i\xCC\x87";
    } else {
      append_utf8(out, lowercase_code_point(cp));
    }
    i += n;
  }
  return out;
}

}  // namespace s2s
