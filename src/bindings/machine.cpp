// The machine's bindings: what s2sext sees of the CPU and BLAS (cpu_info), the process-wide
// settings its kernels read (the SIMD kernel path, the thread count) and the block cache of freed
// output buffers (memory_cache_info, set_memory_cache_limit). Settings are checked here, so that
// a bad value raises in Python rather than reaching the core.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <string>

#include "common.h"
#include "kernels/cpu.h"
#include "runtime/blas.h"
#include "runtime/block_cache.h"
#include "runtime/parallel.h"
#include "runtime/recurrent_weights.h"

namespace bindings {

namespace {

py::dict cpu_info() {
  const s2s::CpuInfo info = s2s::cpu_info();
  py::dict features;
  for (const auto& f : info.features) features[py::str(f.first)] = f.second;
  const s2s::BlasInfo blas = s2s::blas_info();
  py::dict blas_dict;
  blas_dict["name"] = blas.name;
  blas_dict["config"] = blas.config;
  blas_dict["core"] = blas.core;
  blas_dict["threads"] = blas.threads;  // BLAS's own threads; s2sext splits work itself
  py::dict out;
  out["arch"] = info.arch;
  out["features"] = features;
  out["available_paths"] = py::cast(info.available_paths);
  out["kernel_path"] = info.kernel_path;
  out["env_request"] = info.env_request;
  out["blas"] = blas_dict;
  out["num_threads"] = s2s::num_threads();
  py::list backends;
  backends.append("blas");
  if (s2s::onednn_built()) backends.append("onednn");
  out["recurrent_backends"] = backends;
  out["recurrent_backend"] = s2s::recurrent_backend_name(s2s::recurrent_backend());
  out["onednn_version"] = s2s::onednn_version();
  out["onednn_packs_weights"] = s2s::onednn_packs_weights();
  return out;
}

std::string set_recurrent_backend(py::handle name_in) {
  const std::string available = s2s::onednn_built() ? "blas, onednn" : "blas";
  if (!py::isinstance<py::str>(name_in))
    throw py::type_error("set_recurrent_backend: name must be a str, one of " + available + ", got " +
                         type_name(name_in));
  const std::string name = py::cast<std::string>(name_in);
  s2s::RecurrentBackend backend;
  if (!s2s::parse_recurrent_backend(name, &backend))
    throw py::value_error("set_recurrent_backend: unknown backend '" + name + "'; expected one of blas, onednn");
  if (backend == s2s::RecurrentBackend::onednn && !s2s::onednn_built())
    throw py::value_error("set_recurrent_backend: backend 'onednn' is not in this build (oneDNN was not found "
                          "when it was compiled); available: " + available);
  const std::string previous = s2s::recurrent_backend_name(s2s::recurrent_backend());
  s2s::set_recurrent_backend(backend);
  return previous;
}

std::string set_kernel_path(py::handle name_in) {
  std::string available;
  for (const std::string& p : s2s::cpu_info().available_paths) available += (available.empty() ? "" : ", ") + p;
  if (!py::isinstance<py::str>(name_in))
    throw py::type_error("set_kernel_path: name must be a str, one of " + available + ", got " + type_name(name_in));
  const std::string name = py::cast<std::string>(name_in);
  s2s::KernelPath path;
  if (!s2s::parse_path(name, &path))
    throw py::value_error("set_kernel_path: unknown path '" + name + "'; expected one of portable, avx2, avx512, avx512_vnni, avx512_bf16");
  if (!s2s::path_available(path))
    throw py::value_error("set_kernel_path: path '" + name + "' is not supported by this CPU or build; available: " +
                          available);
  const std::string previous = s2s::path_name(s2s::active_path());
  s2s::set_active_path(path);
  return previous;
}

py::dict memory_cache_info() {
  py::dict d;
  d["cached_bytes"] = s2s::block_cache_bytes();
  d["min_block_bytes"] = s2s::kBlockCacheMinBytes;
  return d;
}

int set_num_threads(py::handle threads_in) {
  // any integer (int, numpy integer: what has __index__), not bool
  if (!PyIndex_Check(threads_in.ptr()) || py::isinstance<py::bool_>(threads_in))
    throw py::type_error("set_num_threads: threads must be an int >= 1, got " + type_name(threads_in));
  const py::int_ as_int = py::reinterpret_steal<py::int_>(PyNumber_Index(threads_in.ptr()));
  if (!as_int) throw py::error_already_set();
  int overflow = 0;
  const long long threads = PyLong_AsLongLongAndOverflow(as_int.ptr(), &overflow);
  if (overflow != 0 || threads < 1 || threads > s2s::kMaxThreads)
    throw py::value_error("set_num_threads: threads must be between 1 and " + std::to_string(s2s::kMaxThreads) +
                          ", got " + std::string(py::str(as_int)));
  const int previous = s2s::num_threads();
  s2s::set_num_threads(static_cast<int>(threads));
  return previous;
}

}  // namespace

void register_machine(py::module_& m) {
  m.def("memory_cache_info", &memory_cache_info,
        "Bytes of freed output buffers s2sext keeps for reuse (large arrays only).");
  m.def("set_memory_cache_limit", [](size_t limit) { s2s::set_block_cache_limit(limit); }, py::arg("limit_bytes"),
        "Most bytes of freed output buffers kept for reuse (default 256 MiB); 0 frees them and turns the cache off.");
  m.def("cpu_info", &cpu_info,
        "The machine as s2sext sees it: a dict with 'arch', 'features' (CPU feature -> bool),\n"
        "'available_paths' (SIMD kernel paths this CPU and build can run), 'kernel_path' (the active\n"
        "one), 'env_request' (S2SEXT_KERNEL_PATH as read at start-up), 'blas' (name, config, core,\n"
        "threads of the BLAS library itself), 'num_threads' (threads s2sext uses), 'recurrent_backends'\n"
        "(backends of the LSTM's recurrent products in this build), 'recurrent_backend' (the active one)\n"
        "'onednn_version' ('' without oneDNN) and 'onednn_packs_weights' (oneDNN packs recurrent weights\n"
        "on this CPU: the start-up backend is then 'onednn', else 'blas').");
  m.def("set_kernel_path", &set_kernel_path, py::arg("name"),
        "Switches the SIMD kernel path ('portable', 'avx2', 'avx512', 'avx512_vnni', 'avx512_bf16') for the whole process and\n"
        "returns the previous one. ValueError for an unknown name or one this CPU cannot run.");
  m.def("set_recurrent_backend", &set_recurrent_backend, py::arg("name"),
        "Switches the backend of the LSTM's recurrent per-step products for the whole process and returns\n"
        "the previous one: 'blas' (gemm at every step) or 'onednn' (oneDNN's matmul, the weights reordered\n"
        "once per call; float32; where built). ValueError for an unknown name or one not built.");
  m.def("onednn_weights_prepared", &s2s::onednn_weights_prepared,
        "How many times recurrent weights were reordered for oneDNN since start-up (all threads).");
  m.def("set_num_threads", &set_num_threads, py::arg("threads"),
        "Sets the number of threads s2sext's kernels may use (1 to 1024) and returns the previous\n"
        "count. The default is S2SEXT_NUM_THREADS, else the number of CPUs.");
  m.def("get_num_threads", &s2s::num_threads, "The number of threads s2sext's kernels may use.");
}

}  // namespace bindings
