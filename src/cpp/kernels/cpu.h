// CPU features and the choice of SIMD kernel path: the one place that knows which path runs.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernels.h"

namespace s2s {

struct CpuInfo {
  std::string arch;                                  // "x86_64", "aarch64", ...
  std::vector<std::pair<std::string, bool>> features;  // feature name -> present
  std::vector<std::string> available_paths;          // paths this CPU and build can run
  std::string kernel_path;                           // the active path
  std::string env_request;                           // value of S2SEXT_KERNEL_PATH, "" if unset
};

CpuInfo cpu_info();
const char* path_name(KernelPath path);
// Parses a path name; false if unknown.
bool parse_path(const std::string& name, KernelPath* out);
bool path_available(KernelPath path);
KernelPath active_path();
// Switches the active path for the whole process; the caller checks availability first.
void set_active_path(KernelPath path);

}  // namespace s2s
