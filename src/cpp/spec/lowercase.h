// s2sext's one lowercasing rule, for models that lowercase a side's text (config "src_lowercase" /
// "tgt_lowercase"): each code point becomes its own lowercase form (Unicode's full lowercase
// mapping, as Python's str.lower gives it for that code point alone: no context rule for a
// word-final capital sigma). The Python layer calls this same code (_core.lowercase), so training,
// the Python decoders and the C++ Translator lowercase alike.
#pragma once

#include <string>

namespace s2s {

// The Unicode version of the table (tests/make_lowercase_table.py writes it).
const char* lowercase_unicode_version();

// Valid UTF-8 -> its lowercase form; std::invalid_argument for text that is not valid UTF-8.
std::string lowercase_utf8(const std::string& text);

}  // namespace s2s
