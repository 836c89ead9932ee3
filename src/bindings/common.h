// What every binding file of s2sext._core shares: the argument checks (a Checker per call, whose
// messages name the function, the argument, the expected and the actual value), the conversion of
// arrays to C-contiguous float32/float64 (a copy only when needed), the dtype dispatch, the output
// allocation (large outputs from the block cache), the checks that a forward's cache still holds
// what the forward left, and the register_* functions each family's file defines for module.cpp.
// Written once here so that every binding checks and converts alike; no math lives here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "runtime/block_cache.h"
#include "spec/model_spec.h"

namespace bindings {

namespace py = pybind11;

template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

// "(2, 3)", "(4,)": numpy's spelling, as messages quote shapes.
std::string shape_str(const py::array& a);
std::string type_name(py::handle obj);

// The checks of one call: it knows the function's name for messages and binds shape letters (B, S,
// H, ...) to sizes as arguments are checked, so later arguments are compared against earlier ones.
class Checker {
 public:
  // fn, and every name given to the checks below, must outlive the Checker (string literals): the
  // success path builds no strings, only a failing check does.
  explicit Checker(const char* fn) : fn_(fn) {}

  [[noreturn]] void value_error(const std::string& msg) const;
  [[noreturn]] void type_error(const std::string& msg) const;

  // A real floating array (any float dtype), else TypeError. Not yet converted.
  py::array float_array(py::handle obj, const char* name) const;

  // Checked against spec ("B,S,H", "4H,I"), converted to C-contiguous T.
  template <class T>
  Array<T> floats(py::handle obj, const char* name, const char* spec) {
    py::array arr = float_array(obj, name);
    check_shape(arr, name, spec);
    // Already C-contiguous, aligned, of the right dtype (the common case): no conversion at all.
    const bool aligned = reinterpret_cast<uintptr_t>(arr.data()) % alignof(T) == 0;
    if (aligned && Array<T>::check_(arr)) return py::reinterpret_borrow<Array<T>>(arr);
    // A copy (numpy's own error, e.g. MemoryError, propagates). numpy can view unaligned memory,
    // and a conversion to the same dtype keeps it, so such arrays are copied first.
    return Array<T>(aligned ? py::object(arr) : arr.attr("copy")());
  }

  // An argument whose None means zeros (an initial state, a gradient nobody sent): the zeros take
  // their shape from spec, whose letters earlier arguments (or the cache) have bound.
  template <class T>
  Array<T> floats_or_zeros(py::handle obj, const char* name, const char* spec);

  // An argument the core takes as a null pointer when it is None (a bias, a zero gradient).
  template <class T>
  struct Optional {
    Array<T> array;          // holds the converted array alive while the core reads it
    const T* data = nullptr;
  };
  template <class T>
  Optional<T> optional_floats(py::handle obj, const char* name, const char* spec) {
    Optional<T> out;
    if (obj.is_none()) return out;
    out.array = floats<T>(obj, name, spec);
    out.data = out.array.data();
    return out;
  }

  // lengths: None, or integers [B] with min_length <= lengths[b] <= S.
  py::object lengths(py::handle obj, int64_t min_length, const char* why_min) const;

  void bind(char letter, int64_t value, const char* source) { dims_.push_back({letter, value, source}); }

  bool bound(char letter) const {
    for (const Dim& d : dims_)
      if (d.letter == letter) return true;
    return false;
  }

  int64_t dim(char letter) const {
    for (const Dim& d : dims_)
      if (d.letter == letter) return d.value;
    return -1;
  }

 private:
  struct Dim {
    char letter;
    int64_t value;
    const char* source;
  };
  struct Token {
    int64_t mult;
    char letter;
  };

  static std::vector<Token> parse(const char* spec);
  static std::string spec_str(const std::vector<Token>& tokens);
  std::string sources(const std::vector<Token>& tokens) const;
  void check_shape(const py::array& arr, const char* name, const char* spec);

  const char* fn_;
  std::vector<Dim> dims_;
};

bool is_float64(const py::array& arr);

// Runs f(T{}) with T = double when the primary argument is float64 (or f64 is set), else float.
template <class F>
auto with_dtype(bool f64, F&& f) {
  if (f64) return f(double{});
  return f(float{});
}
template <class F>
auto with_dtype(const py::array& primary, F&& f) {
  return with_dtype(is_float64(primary), std::forward<F>(f));
}

// An uninitialised output array. Throws std::bad_alloc for a shape whose size overflows.
template <class T>
Array<T> empty(const std::vector<py::ssize_t>& dims) {
  size_t count = 1;
  for (py::ssize_t d : dims)
    if (d < 0 || __builtin_mul_overflow(count, static_cast<size_t>(d), &count)) throw std::bad_alloc();
  size_t bytes = 0;
  if (__builtin_mul_overflow(count, sizeof(T), &bytes) || bytes > (size_t(1) << 62)) throw std::bad_alloc();
  if (bytes < s2s::kBlockCacheMinBytes) return Array<T>(dims);
  // Large outputs live in blocks of s2s's block cache (block_cache.h): the array owns its block
  // through a capsule that hands it back to the cache when numpy frees the array.
  std::unique_ptr<s2s::Block> block(new s2s::Block(s2s::acquire_block(bytes)));
  T* data = static_cast<T*>(block->data);
  py::capsule owner(block.get(), [](void* p) {
    s2s::Block* b = static_cast<s2s::Block*>(p);
    s2s::release_block(*b);
    delete b;
  });
  block.release();  // the capsule owns it now
  return Array<T>(dims, data, owner);
}

template <class T>
Array<T> zeros(const std::vector<py::ssize_t>& dims) {
  Array<T> a = empty<T>(dims);
  std::fill(a.mutable_data(), a.mutable_data() + a.size(), T(0));
  return a;
}

template <class T>
Array<T> Checker::floats_or_zeros(py::handle obj, const char* name, const char* spec) {
  if (!obj.is_none()) return floats<T>(obj, name, spec);
  std::vector<py::ssize_t> dims;
  for (const Token& t : parse(spec)) dims.push_back(t.mult * dim(t.letter));
  return zeros<T>(dims);
}

const int64_t* lengths_ptr(const py::object& lengths);

// ---- caches -------------------------------------------------------------------------------------

// Caches hold references to the (converted) inputs, so a caller could reshape or re-view one of
// them between a forward and its backward. Each cache therefore records the sizes and dtype of its
// forward, and the backward checks every cached array against them before any pointer is used.

// The ValueError of a cached array that is not what the forward left (dtypes: the expected dtype's
// name in the message).
[[noreturn]] void cached_array_error(const char* fn, const char* name, const py::handle& obj,
                                    const std::vector<py::ssize_t>& shape, const char* dtypes);

// A cached array still is what the forward stored: C-contiguous, aligned, dtype T, this shape.
template <class T>
void check_cached(const char* fn, const char* name, const py::handle& obj, std::vector<py::ssize_t> shape) {
  bool ok = py::isinstance<py::array>(obj);
  if (ok) {
    const py::array a = py::reinterpret_borrow<py::array>(obj);
    ok = Array<T>::check_(a) && reinterpret_cast<uintptr_t>(a.data()) % alignof(T) == 0 &&
         a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  }
  // the message is built only on failure, out of line: this check runs on every backward
  if (!ok) cached_array_error(fn, name, obj, shape, sizeof(T) == 8 ? "float64/int64" : "float32");
}

// The cache's lengths: its own copy, but reachable from Python, so checked again.
void check_cached_lengths(const char* fn, const py::object& lengths, int64_t B, int64_t S, int64_t min_length);

template <class C>
const C& require_cache(py::handle obj, const char* fn, const char* cls, const char* producer) {
  if (!py::isinstance<C>(obj))
    throw py::type_error(std::string(fn) + ": cache must be the " + cls + " returned by " + producer + ", got " +
                         type_name(obj));
  return obj.cast<const C&>();
}

template <class T>
const T* cptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <class T>
const T* cptr_or_null(const py::object& a) {
  return a.is_none() ? nullptr : static_cast<const T*>(py::cast<py::array>(a).data());
}

// ---- what module.cpp registers ------------------------------------------------------------------

void register_lstm(py::module_& m);
void register_attention(py::module_& m);
void register_dense(py::module_& m);
void register_engine(py::module_& m);
void register_optim(py::module_& m);
void register_machine(py::module_& m);
void register_spec(py::module_& m);

// A configuration dict (Seq2Seq's Config.as_dict()) read by the core's one reader
// (spec/model_spec.h read_model_config): ValueError naming the key.
s2s::ModelConfig model_config(const py::dict& config);

}  // namespace bindings
