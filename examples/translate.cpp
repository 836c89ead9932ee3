// Translate with a trained s2sext model from C++, without Python:
//
//   translate MODEL [--beam N] [TEXT ...]        (no TEXT: one line at a time from stdin)
//
// Prints one translation per input. Build: see docs/cpp-api.md.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "s2sext.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " MODEL [--beam N] [TEXT ...]\n";
    return 2;
  }
  int64_t beam = 1;
  std::vector<std::string> texts;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--beam" && i + 1 < argc) beam = std::atoll(argv[++i]);
    else texts.push_back(arg);
  }
  try {
    const s2sext::Translator translator = s2sext::Translator::load(argv[1]);
    if (texts.empty()) {
      for (std::string line; std::getline(std::cin, line);)
        std::cout << (line.empty() ? "" : translator.translate(line, beam)) << "\n";
    } else {
      for (const std::string& text : texts) std::cout << translator.translate(text, beam) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "translate: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
