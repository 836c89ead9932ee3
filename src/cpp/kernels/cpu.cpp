// Run-time choice of the SIMD path. At start-up the best path the CPU supports is chosen, unless
// the environment variable S2SEXT_KERNEL_PATH names another (so tests can run every path on one
// machine). The choice is one atomic integer; kernels themselves keep no state.
#include "kernels/cpu.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace s2s {
namespace {

// lowest first, as cpu_info() lists the available ones
constexpr KernelPath kAllPaths[] = {KernelPath::portable, KernelPath::avx2, KernelPath::avx512,
                                    KernelPath::avx512_vnni, KernelPath::avx512_bf16};

#if defined(__x86_64__) || defined(_M_X64)
constexpr bool kX86 = true;
#else
constexpr bool kX86 = false;
#endif

bool has(const char* feature) {
#if defined(__x86_64__) || defined(_M_X64)
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XGETBV).
  __builtin_cpu_init();
  const std::string f = feature;
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "f16c") return __builtin_cpu_supports("f16c");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
  if (f == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
#endif
  (void)feature;
  return false;
}

const char* const kFeatureNames[] = {"avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
                                     "avx512vl", "avx512vnni", "avx512bf16"};

bool supported(KernelPath path) {
  switch (path) {
    case KernelPath::portable: return true;
    case KernelPath::avx2: return kX86 && has("avx2") && has("fma") && has("f16c");
    case KernelPath::avx512:
      return kX86 && supported(KernelPath::avx2) && has("avx512f") && has("avx512dq") &&
             has("avx512bw") && has("avx512vl");
    case KernelPath::avx512_vnni: return supported(KernelPath::avx512) && has("avx512vnni");
    case KernelPath::avx512_bf16: return supported(KernelPath::avx512_vnni) && has("avx512bf16");
  }
  return false;
}

const char* env_request() {
  const char* v = std::getenv("S2SEXT_KERNEL_PATH");
  return v ? v : "";
}

KernelPath best_path() {
  if (supported(KernelPath::avx512_bf16)) return KernelPath::avx512_bf16;
  if (supported(KernelPath::avx512_vnni)) return KernelPath::avx512_vnni;
  if (supported(KernelPath::avx512)) return KernelPath::avx512;
  if (supported(KernelPath::avx2)) return KernelPath::avx2;
  return KernelPath::portable;
}

// S2SEXT_KERNEL_PATH if it names a path this CPU and build can run; a value that does not (an
// unknown name, a path the CPU lacks) is reported once on stderr and the best path runs. An empty
// value counts as unset.
KernelPath initial_path() {
  const std::string request = env_request();
  const KernelPath best = best_path();
  if (request.empty()) return best;
  KernelPath requested;
  const bool known = parse_path(request, &requested);
  if (known && supported(requested)) return requested;
  std::fprintf(stderr, "s2sext: ignoring S2SEXT_KERNEL_PATH='%s': %s; using %s\n", request.c_str(),
               known ? "this CPU or build cannot run that path" : "expected one of portable, avx2, avx512, avx512_vnni, avx512_bf16",
               path_name(best));
  return best;
}

std::atomic<int>& path_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_path())};
  return slot;
}

}  // namespace

const char* path_name(KernelPath path) {
  switch (path) {
    case KernelPath::portable: return "portable";
    case KernelPath::avx2: return "avx2";
    case KernelPath::avx512: return "avx512";
    case KernelPath::avx512_vnni: return "avx512_vnni";
    case KernelPath::avx512_bf16: return "avx512_bf16";
  }
  return "?";
}

bool parse_path(const std::string& name, KernelPath* out) {
  for (KernelPath p : kAllPaths) {
    if (name == path_name(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

bool path_available(KernelPath path) { return supported(path); }

KernelPath active_path() { return static_cast<KernelPath>(path_slot().load(std::memory_order_relaxed)); }

void set_active_path(KernelPath path) { path_slot().store(static_cast<int>(path), std::memory_order_relaxed); }

CpuInfo cpu_info() {
  CpuInfo info;
#if defined(__x86_64__) || defined(_M_X64)
  info.arch = "x86_64";
#elif defined(__aarch64__)
  info.arch = "aarch64";
#else
  info.arch = "other";
#endif
  if (kX86)
    for (const char* f : kFeatureNames) info.features.emplace_back(f, has(f));
  for (KernelPath p : kAllPaths)
    if (supported(p)) info.available_paths.emplace_back(path_name(p));
  info.kernel_path = path_name(active_path());
  info.env_request = env_request();
  return info;
}

template <class T>
const KernelTable<T>& kernels_for(KernelPath path);

template <>
const KernelTable<float>& kernels_for<float>(KernelPath path) {
#if defined(__x86_64__) || defined(_M_X64)
  if (path == KernelPath::avx512_bf16) return avx512_bf16::table_f32();
  if (path == KernelPath::avx512_vnni) return avx512_vnni::table_f32();
  if (path == KernelPath::avx512) return avx512::table_f32();
  if (path == KernelPath::avx2) return avx2::table_f32();
#endif
  (void)path;
  return portable::table_f32();
}

template <>
const KernelTable<double>& kernels_for<double>(KernelPath path) {
#if defined(__x86_64__) || defined(_M_X64)
  if (path == KernelPath::avx512_bf16) return avx512_bf16::table_f64();
  if (path == KernelPath::avx512_vnni) return avx512_vnni::table_f64();
  if (path == KernelPath::avx512) return avx512::table_f64();
  if (path == KernelPath::avx2) return avx2::table_f64();
#endif
  (void)path;
  return portable::table_f64();
}

template <class T>
const KernelTable<T>& kernels() {
  return kernels_for<T>(active_path());
}
template const KernelTable<float>& kernels<float>();
template const KernelTable<double>& kernels<double>();

}  // namespace s2s
