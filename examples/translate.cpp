// Translate with a trained s2sext model from C++, without Python:
//
//   translate MODEL [--beam N] [--sampling-topk K] [--sampling-topp P] [--sampling-temperature T]
//             [--seed S] [--no-repeat-ngram-size N] [--coverage-penalty BETA]
//             [--dtype float32|bfloat16|int8] [TEXT ...]
//   (no TEXT: one line at a time from stdin)
//
// Prints one translation per input. Build: see docs/cpp-api.md.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "s2sext.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " MODEL [--beam N] [--sampling-topk K] [--sampling-topp P] "
                 "[--sampling-temperature T] [--seed S] [--no-repeat-ngram-size N] [--coverage-penalty BETA] "
                 "[--dtype float32|bfloat16|int8] [TEXT ...]\n";
    return 2;
  }
  s2sext::GenerateOptions options;
  std::vector<std::string> texts;
  std::string dtype = "float32";
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool value = i + 1 < argc;
    if (arg == "--beam" && value) options.beam_size = std::atoll(argv[++i]);
    else if (arg == "--sampling-topk" && value) options.sampling_topk = std::atoll(argv[++i]);
    else if (arg == "--sampling-topp" && value) options.sampling_topp = std::atof(argv[++i]);
    else if (arg == "--sampling-temperature" && value) options.sampling_temperature = std::atof(argv[++i]);
    else if (arg == "--seed" && value) options.seed = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--no-repeat-ngram-size" && value) options.no_repeat_ngram_size = std::atoll(argv[++i]);
    else if (arg == "--coverage-penalty" && value) options.coverage_penalty = std::atof(argv[++i]);
    else if (arg == "--dtype" && value) dtype = argv[++i];
    else texts.push_back(arg);
  }
  try {
    const s2sext::Translator translator = s2sext::Translator::load(argv[1], dtype);
    if (texts.empty()) {
      for (std::string line; std::getline(std::cin, line);)
        std::cout << (line.empty() ? "" : translator.translate(line, options)) << "\n";
    } else {
      for (const std::string& text : texts) std::cout << translator.translate(text, options) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "translate: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
