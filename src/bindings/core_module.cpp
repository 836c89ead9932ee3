// s2sext._core: the one layer between Python and the C++ core. Each function validates its
// arguments (messages name the argument, the expected and the actual value), converts arrays to
// C-contiguous float32/float64 (a copy only when needed), allocates the outputs, then releases the
// GIL around the kernel. No math lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ops/attention.h"
#include "runtime/blas.h"
#include "runtime/block_cache.h"
#include "kernels/cpu.h"
#include "ops/dense.h"
#include "engine/engine.h"
#include "ops/lstm.h"
#include "api/model_file.h"
#include "ops/optim.h"
#include "runtime/parallel.h"
#include "api/s2sext.h"

namespace py = pybind11;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

std::string letter_name(char letter) { return letter == 'M' ? "S_max" : std::string(1, letter); }

// The checks of one call: it knows the function's name for messages and binds shape letters (B, S,
// H, ...) to sizes as arguments are checked, so later arguments are compared against earlier ones.
class Checker {
 public:
  // fn, and every name given to the checks below, must outlive the Checker (string literals): the
  // success path builds no strings, only a failing check does.
  explicit Checker(const char* fn) : fn_(fn) {}

  [[noreturn]] void value_error(const std::string& msg) const { throw py::value_error(std::string(fn_) + ": " + msg); }
  [[noreturn]] void type_error(const std::string& msg) const { throw py::type_error(std::string(fn_) + ": " + msg); }

  // A real floating array (any float dtype), else TypeError. Not yet converted.
  py::array float_array(py::handle obj, const char* name) const {
    if (obj.is_none()) type_error(std::string(name) + " must be a float32 or float64 array, got None");
    py::array arr = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj) : py::array::ensure(obj);
    if (!arr) type_error(std::string(name) + " must be a float32 or float64 array, got " + type_name(obj));
    const char kind = arr.dtype().kind();
    if (kind == 'c')
      type_error(std::string(name) + " has complex dtype " + std::string(py::str(arr.dtype())) +
                 "; expected a real float dtype (float32 or float64)");
    if (kind != 'f')
      type_error(std::string(name) + " must have a float dtype (float32 or float64), got dtype " +
                 std::string(py::str(arr.dtype())));
    return arr;
  }

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

  // lengths: None, or integers [B] with min_length <= lengths[b] <= S.
  py::object lengths(py::handle obj, int64_t min_length, const char* why_min) const {
    if (obj.is_none()) return py::none();
    py::array arr = py::array::ensure(obj);
    if (!arr) type_error("lengths must be an integer array of shape (B,), got " + type_name(obj));
    const char kind = arr.dtype().kind();
    if (kind != 'i' && kind != 'u')
      type_error("lengths must have an integer dtype, got dtype " + std::string(py::str(arr.dtype())));
    const int64_t B = dim('B'), S = dim('S');
    if (arr.ndim() != 1 || arr.shape(0) != B)
      value_error("lengths must have shape (B,) = (" + std::to_string(B) + ",), got shape " + shape_str(arr));
    if (kind == 'u') {  // values above int64's range would wrap; compare as unsigned first
      Array<uint64_t> u(arr);
      for (int64_t n = 0; n < B; ++n)
        if (u.data()[n] > static_cast<uint64_t>(S))
          value_error("lengths[" + std::to_string(n) + "] = " + std::to_string(u.data()[n]) +
                      " exceeds S = " + std::to_string(S));
    }
    // Always a copy: the cache keeps these, and a caller's array could change before backward.
    Array<int64_t> out(std::vector<py::ssize_t>{B});
    const Array<int64_t> converted(arr);
    std::copy(converted.data(), converted.data() + B, out.mutable_data());
    for (int64_t n = 0; n < B; ++n) {
      const int64_t len = out.data()[n];
      if (len < min_length || len > S)
        value_error("lengths[" + std::to_string(n) + "] = " + std::to_string(len) + " is out of range; expected " +
                    std::to_string(min_length) + " <= length <= S = " + std::to_string(S) + why_min);
    }
    return std::move(out);
  }

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

  static std::vector<Token> parse(const char* spec) {
    std::vector<Token> tokens;
    for (const char* p = spec; *p;) {
      int64_t mult = 0;
      while (*p >= '0' && *p <= '9') mult = mult * 10 + (*p++ - '0');
      tokens.push_back({mult ? mult : 1, *p++});
      if (*p == ',') ++p;
    }
    return tokens;
  }

  static std::string spec_str(const std::vector<Token>& tokens) {
    std::string s = "[";
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) s += ", ";
      if (tokens[i].mult != 1) s += std::to_string(tokens[i].mult);
      s += letter_name(tokens[i].letter);
    }
    return s + "]";
  }

  std::string sources(const std::vector<Token>& tokens) const {
    std::string s;
    std::vector<char> seen;
    for (const Token& t : tokens) {
      bool dup = false;
      for (char c : seen) dup |= c == t.letter;
      if (dup) continue;
      seen.push_back(t.letter);
      for (const Dim& d : dims_)
        if (d.letter == t.letter) {
          if (!s.empty()) s += ", ";
          s += letter_name(t.letter) + "=" + std::to_string(d.value) + " from " + std::string(d.source);
          break;
        }
    }
    return s;
  }

  void check_shape(const py::array& arr, const char* name, const char* spec) {
    const std::vector<Token> tokens = parse(spec);
    if (arr.ndim() != static_cast<py::ssize_t>(tokens.size()))
      value_error(std::string(name) + " must have " + std::to_string(tokens.size()) + " dimensions " +
                  spec_str(tokens) + ", got " + std::to_string(arr.ndim()) + " with shape " + shape_str(arr));
    // Unbound letters take their size from this argument: plain ones first, then multiples (4H).
    for (int pass = 0; pass < 2; ++pass)
      for (size_t i = 0; i < tokens.size(); ++i) {
        const Token& t = tokens[i];
        if ((t.mult == 1) != (pass == 0) || bound(t.letter)) continue;
        const int64_t size = arr.shape(i);
        if (size % t.mult != 0)
          value_error(std::string(name) + " has shape " + shape_str(arr) + "; expected " + spec_str(tokens) +
                      ", and dimension " + std::to_string(i) + " = " + std::to_string(size) +
                      " is not a multiple of " + std::to_string(t.mult));
        bind(t.letter, size / t.mult, name);
      }
    bool ok = true;
    for (size_t i = 0; i < tokens.size(); ++i) ok &= tokens[i].mult * dim(tokens[i].letter) == arr.shape(i);
    if (ok) return;
    std::string expected = "(";
    for (size_t i = 0; i < tokens.size(); ++i)
      expected += (i ? ", " : "") + std::to_string(tokens[i].mult * dim(tokens[i].letter));
    expected += tokens.size() == 1 ? ",)" : ")";
    value_error(std::string(name) + " has shape " + shape_str(arr) + "; expected " + spec_str(tokens) + " = " +
                expected + " (" + sources(tokens) + ")");
  }

  const char* fn_;
  std::vector<Dim> dims_;
};

bool is_float64(const py::array& arr) { return arr.dtype().kind() == 'f' && arr.itemsize() == 8; }

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

template <class T>
Array<T> empty(std::initializer_list<py::ssize_t> shape) {
  const std::vector<py::ssize_t> dims(shape);
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
Array<T> zeros(std::initializer_list<py::ssize_t> shape) {
  Array<T> a = empty<T>(shape);
  std::fill(a.mutable_data(), a.mutable_data() + a.size(), T(0));
  return a;
}

const int64_t* lengths_ptr(const py::object& lengths) {
  return lengths.is_none() ? nullptr : py::cast<Array<int64_t>>(lengths).data();
}

// An attention argument that is 2-D for one decoder step and 3-D for all steps: which one it is.
bool is_one_step(const Checker& ck, py::handle obj, const char* name, const char* shapes) {
  const py::array arr = ck.float_array(obj, name);
  if (arr.ndim() != 2 && arr.ndim() != 3)
    ck.value_error(std::string(name) + " must have shape " + shapes + ", got shape " + shape_str(arr));
  return arr.ndim() == 2;
}

// ---- caches -------------------------------------------------------------------------------------

// Caches hold references to the (converted) inputs, so a caller could reshape or re-view one of
// them between a forward and its backward. Each cache therefore records the sizes and dtype of its
// forward, and the backward checks every cached array against them before any pointer is used.
struct LSTMCellCache {
  py::array x, h0, c0, w_ih, w_hh;  // the inputs, as computed with
  py::array gates;                   // [B,4H] activations i, f, g, o
  py::array c1;                      // [B,H] new cell state
  int64_t B, I, H;
  bool f64;
};

struct LSTMCache {
  py::array hx_all;                   // [S+1,B,H+I] [h entering step t | x at step t], time-major
  py::array w_ih, w_hh;
  py::object lengths;                 // int64 [B] (the cache's own copy) or None
  py::array gates;                    // [S,B,4H] activations (0 past a length)
  py::array c_all;                    // [S+1,B,H] cell state before step 0 and after each step
  int64_t B, S, I, H;
  bool f64;
};

struct AttentionCache {
  std::string kind;
  bool one_step;                      // q was [B,H] (a is [B,S])
  py::array hs, q;                    // q as [B,T,H]
  py::tuple params;
  py::object lengths;                 // int64 [B] (the cache's own copy) or None
  py::array a;                        // [B,T,S]
  py::object query_proj, key_proj;    // general: q W_a [B,T,H]; concat: W_q q [B,T,A], W_k hs [B,S,A]
  int64_t B, T, S, H, A, S_max;
  bool f64;
};

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
  if (!ok) {  // the message is built only here: this check runs on every backward
    const std::string got = py::isinstance<py::array>(obj)
        ? "dtype " + std::string(py::str(py::reinterpret_borrow<py::array>(obj).dtype())) + ", shape " +
              shape_str(py::reinterpret_borrow<py::array>(obj))
        : "a " + type_name(obj);
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    throw py::value_error(std::string(fn) + ": cache." + name + " is not what the forward left (expected a " +
                          "C-contiguous " + (sizeof(T) == 8 ? "float64/int64" : "float32") + " array of shape " +
                          want + (shape.size() == 1 ? ",)" : ")") + ", got " + got +
                          "); do not modify the forward's inputs in place before the backward");
  }
}

// The cache's lengths: its own copy, but reachable from Python, so checked again.
void check_cached_lengths(const char* fn, const py::object& lengths, int64_t B, int64_t S, int64_t min_length) {
  if (lengths.is_none()) return;
  check_cached<int64_t>(fn, "lengths", lengths, {B});
  const int64_t* len = py::cast<Array<int64_t>>(lengths).data();
  for (int64_t n = 0; n < B; ++n)
    if (len[n] < min_length || len[n] > S)
      throw py::value_error(std::string(fn) + ": cache.lengths[" + std::to_string(n) + "] = " +
                            std::to_string(len[n]) + " is out of range (it was changed after the forward)");
}

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

// ---- LSTM ---------------------------------------------------------------------------------------

py::tuple lstm_cell_forward(py::handle x_in, py::handle h0_in, py::handle c0_in, py::handle w_ih_in,
                            py::handle w_hh_in, py::handle b_in) {
  Checker ck("lstm_cell_forward");
  const py::array x_raw = ck.float_array(x_in, "x");
  return with_dtype(x_raw, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto x = ck.floats<T>(x_in, "x", "B,I");
    auto w_hh = ck.floats<T>(w_hh_in, "w_hh", "4H,H");
    auto w_ih = ck.floats<T>(w_ih_in, "w_ih", "4H,I");
    auto b = ck.floats<T>(b_in, "b", "4H");
    const int64_t B = ck.dim('B'), I = ck.dim('I'), H = ck.dim('H');
    auto h0 = h0_in.is_none() ? zeros<T>({B, H}) : ck.floats<T>(h0_in, "h0", "B,H");
    auto c0 = c0_in.is_none() ? zeros<T>({B, H}) : ck.floats<T>(c0_in, "c0", "B,H");
    // The cache keeps its own c1: the caller may write into the c1 it gets back.
    auto h1 = empty<T>({B, H}), c1 = empty<T>({B, H}), c1_saved = empty<T>({B, H}), gates = empty<T>({B, 4 * H});
    {
      py::gil_scoped_release nogil;
      s2s::lstm_cell_forward<T>(h1.mutable_data(), c1.mutable_data(), gates.mutable_data(), x.data(),
                                h0.data(), c0.data(), w_ih.data(), w_hh.data(), b.data(), B, I, H);
      std::memcpy(c1_saved.mutable_data(), c1.data(), sizeof(T) * B * H);
    }
    return py::make_tuple(h1, c1, LSTMCellCache{x, h0, c0, w_ih, w_hh, gates, c1_saved, B, I, H, sizeof(T) == 8});
  });
}

py::tuple lstm_cell_backward(py::handle dh1_in, py::handle dc1_in, py::handle cache_in) {
  Checker ck("lstm_cell_backward");
  const auto& cache = require_cache<LSTMCellCache>(cache_in, "lstm_cell_backward", "LSTMCellCache",
                                                   "lstm_cell_forward");
  return with_dtype(cache.f64, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const int64_t B = cache.B, I = cache.I, H = cache.H;
    const char* fn = "lstm_cell_backward";
    check_cached<T>(fn, "x", cache.x, {B, I});
    check_cached<T>(fn, "h0", cache.h0, {B, H});
    check_cached<T>(fn, "c0", cache.c0, {B, H});
    check_cached<T>(fn, "w_ih", cache.w_ih, {4 * H, I});
    check_cached<T>(fn, "w_hh", cache.w_hh, {4 * H, H});
    check_cached<T>(fn, "gates", cache.gates, {B, 4 * H});
    check_cached<T>(fn, "c1", cache.c1, {B, H});
    ck.bind('B', B, "cache");
    ck.bind('H', H, "cache");
    auto dh1 = dh1_in.is_none() ? zeros<T>({B, H}) : ck.floats<T>(dh1_in, "dh1", "B,H");
    auto dc1 = dc1_in.is_none() ? zeros<T>({B, H}) : ck.floats<T>(dc1_in, "dc1", "B,H");
    auto dx = empty<T>({B, I}), dh0 = empty<T>({B, H}), dc0 = empty<T>({B, H});
    auto dw_ih = empty<T>({4 * H, I}), dw_hh = empty<T>({4 * H, H}), db = empty<T>({4 * H});
    {
      py::gil_scoped_release nogil;
      s2s::lstm_cell_backward<T>(dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), dw_ih.mutable_data(),
                                 dw_hh.mutable_data(), db.mutable_data(), dh1.data(), dc1.data(),
                                 cptr<T>(cache.gates), cptr<T>(cache.c1), cptr<T>(cache.x), cptr<T>(cache.h0),
                                 cptr<T>(cache.c0), cptr<T>(cache.w_ih), cptr<T>(cache.w_hh), B, I, H);
    }
    return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db);
  });
}

py::tuple lstm_forward(py::handle x_in, py::handle h0_in, py::handle c0_in, py::handle w_ih_in,
                       py::handle w_hh_in, py::handle b_in, py::handle lengths_in) {
  Checker ck("lstm_forward");
  const py::array x_raw = ck.float_array(x_in, "x");
  return with_dtype(x_raw, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto x = ck.floats<T>(x_in, "x", "B,S,I");
    auto w_hh = ck.floats<T>(w_hh_in, "w_hh", "4H,H");
    auto w_ih = ck.floats<T>(w_ih_in, "w_ih", "4H,I");
    auto b = ck.floats<T>(b_in, "b", "4H");
    const int64_t B = ck.dim('B'), S = ck.dim('S'), I = ck.dim('I'), H = ck.dim('H');
    auto h0 = h0_in.is_none() ? zeros<T>({B, H}) : ck.floats<T>(h0_in, "h0", "B,H");
    auto c0 = c0_in.is_none() ? zeros<T>({B, H}) : ck.floats<T>(c0_in, "c0", "B,H");
    py::object lengths = ck.lengths(lengths_in, 0, "");
    auto hs = empty<T>({B, S, H}), hT = empty<T>({B, H}), cT = empty<T>({B, H});
    auto hx_all = empty<T>({S + 1, B, H + I}), gates = empty<T>({S, B, 4 * H});
    auto c_all = empty<T>({S + 1, B, H});
    const int64_t* len = lengths_ptr(lengths);
    {
      py::gil_scoped_release nogil;
      s2s::lstm_forward<T>(hs.mutable_data(), hT.mutable_data(), cT.mutable_data(), hx_all.mutable_data(),
                           gates.mutable_data(), c_all.mutable_data(), x.data(), h0.data(), c0.data(), w_ih.data(),
                           w_hh.data(), b.data(), len, B, S, I, H);
    }
    return py::make_tuple(hs, hT, cT,
                          LSTMCache{hx_all, w_ih, w_hh, lengths, gates, c_all, B, S, I, H, sizeof(T) == 8});
  });
}

py::tuple lstm_backward(py::handle dhs_in, py::handle dhT_in, py::handle dcT_in, py::handle cache_in) {
  Checker ck("lstm_backward");
  const auto& cache = require_cache<LSTMCache>(cache_in, "lstm_backward", "LSTMCache", "lstm_forward");
  return with_dtype(cache.f64, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const int64_t S = cache.S, B = cache.B, I = cache.I, H = cache.H;
    const char* fn = "lstm_backward";
    check_cached<T>(fn, "hx_all", cache.hx_all, {S + 1, B, H + I});
    check_cached<T>(fn, "w_ih", cache.w_ih, {4 * H, I});
    check_cached<T>(fn, "w_hh", cache.w_hh, {4 * H, H});
    check_cached<T>(fn, "gates", cache.gates, {S, B, 4 * H});
    check_cached<T>(fn, "c_all", cache.c_all, {S + 1, B, H});
    check_cached_lengths(fn, cache.lengths, B, S, 0);
    ck.bind('B', B, "cache");
    ck.bind('S', S, "cache");
    ck.bind('H', H, "cache");
    // None means a zero gradient; the core takes a null pointer for it.
    Array<T> dhs, dhT, dcT;
    const T *dhs_p = nullptr, *dhT_p = nullptr, *dcT_p = nullptr;
    if (!dhs_in.is_none()) dhs_p = (dhs = ck.floats<T>(dhs_in, "dhs", "B,S,H")).data();
    if (!dhT_in.is_none()) dhT_p = (dhT = ck.floats<T>(dhT_in, "dhT", "B,H")).data();
    if (!dcT_in.is_none()) dcT_p = (dcT = ck.floats<T>(dcT_in, "dcT", "B,H")).data();
    auto dx = empty<T>({B, S, I}), dh0 = empty<T>({B, H}), dc0 = empty<T>({B, H});
    auto dw_ih = empty<T>({4 * H, I}), dw_hh = empty<T>({4 * H, H}), db = empty<T>({4 * H});
    const int64_t* len = lengths_ptr(cache.lengths);
    {
      py::gil_scoped_release nogil;
      s2s::lstm_backward<T>(dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), dw_ih.mutable_data(),
                            dw_hh.mutable_data(), db.mutable_data(), dhs_p, dhT_p, dcT_p,
                            cptr<T>(cache.hx_all), cptr<T>(cache.gates), cptr<T>(cache.c_all),
                            cptr<T>(cache.w_ih), cptr<T>(cache.w_hh), len, B, S, I, H);
    }
    return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db);
  });
}

// ---- attention ----------------------------------------------------------------------------------

struct KindSpec {
  const char* name;
  s2s::ScoreKind kind;
  const char* params_doc;  // for messages
  std::vector<std::pair<const char*, const char*>> params;  // (name, shape spec)
  size_t optional = 0;  // how many of the last params may be left out (concat's b_q)
};

const std::vector<KindSpec>& kind_specs() {
  static const std::vector<KindSpec> specs = {
      {"dot", s2s::ScoreKind::dot, "()", {}},
      {"scaled_dot", s2s::ScoreKind::scaled_dot, "()", {}},
      {"general", s2s::ScoreKind::general, "(W_a [H, H],)", {{"W_a", "H,H"}}},
      {"concat", s2s::ScoreKind::concat, "(W_q [A, H], W_k [A, H], v [A]) or (W_q, W_k, v, b_q [A])",
       {{"W_q", "A,H"}, {"W_k", "A,H"}, {"v", "A"}, {"b_q", "A"}}, 1},
      {"location", s2s::ScoreKind::location, "(W_a [S_max, H],)", {{"W_a", "M,H"}}},
  };
  return specs;
}

const KindSpec& parse_kind(const Checker& ck, py::handle kind_in) {
  std::string known;
  for (const KindSpec& k : kind_specs()) known += (known.empty() ? "" : ", ") + std::string("'") + k.name + "'";
  if (!py::isinstance<py::str>(kind_in))
    ck.type_error("kind must be a str, one of " + known + ", got " + type_name(kind_in));
  const std::string kind = py::cast<std::string>(kind_in);
  for (const KindSpec& k : kind_specs())
    if (kind == k.name) return k;
  ck.value_error("unknown kind '" + kind + "'; expected one of " + known);
}

py::tuple attention_weight_forward(py::handle hs_in, py::handle q_in, py::handle kind_in, py::handle params_in,
                                   py::handle lengths_in) {
  Checker ck("attention_weight_forward");
  const KindSpec& spec = parse_kind(ck, kind_in);
  if (!params_in.is_none() && !py::isinstance<py::tuple>(params_in) && !py::isinstance<py::list>(params_in))
    ck.type_error("params must be a tuple, " + std::string(spec.params_doc) + " for kind '" + spec.name + "', got " +
                  type_name(params_in));
  const py::tuple params_seq = params_in.is_none() ? py::tuple() : py::tuple(py::reinterpret_borrow<py::object>(params_in));
  const size_t n_params = params_seq.size();
  if (n_params > spec.params.size() || n_params + spec.optional < spec.params.size()) {
    const std::string counts = spec.optional ? std::to_string(spec.params.size() - spec.optional) + " or " +
                                                   std::to_string(spec.params.size())
                                             : std::to_string(spec.params.size());
    ck.value_error("params for kind '" + std::string(spec.name) + "' must be " + spec.params_doc + ": " + counts +
                   " array(s), got " + std::to_string(n_params));
  }
  const py::array hs_raw = ck.float_array(hs_in, "hs");
  const bool one_step = is_one_step(ck, q_in, "q", "[B, H] (one step) or [B, T, H] (all steps)");
  return with_dtype(hs_raw, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto hs = ck.floats<T>(hs_in, "hs", "B,S,H");
    auto q = ck.floats<T>(q_in, "q", one_step ? "B,H" : "B,T,H");
    if (one_step) ck.bind('T', 1, "q");
    const int64_t B = ck.dim('B'), T_steps = ck.dim('T'), S = ck.dim('S'), H = ck.dim('H');
    if (S < 1) ck.value_error("hs must have at least one source position, got shape " + shape_str(hs));
    std::vector<Array<T>> params;
    py::tuple params_out(n_params);
    std::vector<std::string> names;  // the checker keeps pointers to them: reserved, never moved
    names.reserve(n_params);
    for (size_t i = 0; i < n_params; ++i) {
      names.push_back("params[" + std::to_string(i) + "] (" + spec.params[i].first + ")");
      params.push_back(ck.floats<T>(params_seq[i], names.back().c_str(), spec.params[i].second));
      params_out[i] = params.back();
    }
    const int64_t A = ck.bound('A') ? ck.dim('A') : 0;
    const int64_t S_max = ck.bound('M') ? ck.dim('M') : 0;
    if (spec.kind == s2s::ScoreKind::location && S > S_max)
      ck.value_error("kind 'location' scores position s by row s of W_a, but hs has S = " + std::to_string(S) +
                     " positions and W_a only S_max = " + std::to_string(S_max) + " rows");
    py::object lengths = ck.lengths(lengths_in, 1, " (attention needs at least one position to attend to)");

    s2s::AttentionParams<T> p;
    if (spec.kind == s2s::ScoreKind::general || spec.kind == s2s::ScoreKind::location) p.w_a = params[0].data();
    if (spec.kind == s2s::ScoreKind::concat) {
      p.w_q = params[0].data();
      p.w_k = params[1].data();
      p.v = params[2].data();
      if (n_params == 4) p.b_q = params[3].data();
    }
    const s2s::AttentionShape shape{B, T_steps, S, H, A, S_max};
    const int64_t qp_size = s2s::attention_query_proj_size(spec.kind, shape);
    const int64_t kp_size = s2s::attention_key_proj_size(spec.kind, shape);
    Array<T> query_proj = empty<T>({qp_size}), key_proj = empty<T>({kp_size});
    T* qp = qp_size ? query_proj.mutable_data() : nullptr;
    T* kp = kp_size ? key_proj.mutable_data() : nullptr;
    auto a = empty<T>({B, T_steps, S});
    const int64_t* len = lengths_ptr(lengths);
    {
      py::gil_scoped_release nogil;
      s2s::attention_weight_forward<T>(a.mutable_data(), qp, kp, hs.data(), q.data(), spec.kind, p, len, shape);
    }
    py::array q3 = q.reshape({B, T_steps, H});
    // The cache keeps its own a: the caller may write into the a it gets back.
    auto a_saved = empty<T>({B, T_steps, S});
    std::memcpy(a_saved.mutable_data(), a.data(), sizeof(T) * B * T_steps * S);
    AttentionCache cache{spec.name, one_step, hs, q3, params_out, lengths, a_saved,
                         qp_size ? py::object(query_proj) : py::none(), kp_size ? py::object(key_proj) : py::none(),
                         B, T_steps, S, H, A, S_max, sizeof(T) == 8};
    py::array a_out = one_step ? py::array(a.reshape({B, S})) : py::array(a);
    return py::make_tuple(a_out, std::move(cache));
  });
}

py::tuple attention_weight_backward(py::handle da_in, py::handle cache_in) {
  Checker ck("attention_weight_backward");
  const auto& cache = require_cache<AttentionCache>(cache_in, "attention_weight_backward", "AttentionCache",
                                                    "attention_weight_forward");
  const KindSpec& spec = parse_kind(ck, py::str(cache.kind));
  return with_dtype(cache.f64, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const int64_t B = cache.B, S = cache.S, H = cache.H, T_steps = cache.T, A = cache.A, S_max = cache.S_max;
    const char* fn = "attention_weight_backward";
    check_cached<T>(fn, "hs", cache.hs, {B, S, H});
    check_cached<T>(fn, "q", cache.q, {B, T_steps, H});
    check_cached<T>(fn, "a", cache.a, {B, T_steps, S});
    check_cached_lengths(fn, cache.lengths, B, S, 1);
    const size_t n_params = cache.params.size();  // concat: 3, or 4 with b_q
    std::vector<std::vector<py::ssize_t>> param_shapes =
        spec.kind == s2s::ScoreKind::general    ? std::vector<std::vector<py::ssize_t>>{{H, H}}
        : spec.kind == s2s::ScoreKind::location ? std::vector<std::vector<py::ssize_t>>{{S_max, H}}
        : spec.kind == s2s::ScoreKind::concat   ? std::vector<std::vector<py::ssize_t>>{{A, H}, {A, H}, {A}}
                                                : std::vector<std::vector<py::ssize_t>>{};
    if (spec.kind == s2s::ScoreKind::concat && n_params == 4) param_shapes.push_back({A});
    if (n_params != param_shapes.size())
      throw py::value_error(std::string(fn) + ": cache.params has " + std::to_string(n_params) +
                            " arrays, not what the forward left");
    for (size_t i = 0; i < param_shapes.size(); ++i)
      check_cached<T>(fn, "params[i]", cache.params[i], param_shapes[i]);
    const s2s::AttentionShape checked{B, T_steps, S, H, A, S_max};
    if (const int64_t n = s2s::attention_query_proj_size(spec.kind, checked)) check_cached<T>(fn, "query_proj", cache.query_proj, {n});
    if (const int64_t n = s2s::attention_key_proj_size(spec.kind, checked)) check_cached<T>(fn, "key_proj", cache.key_proj, {n});
    ck.bind('B', B, "cache");
    ck.bind('T', T_steps, "cache");
    ck.bind('S', S, "cache");
    auto da = ck.floats<T>(da_in, "da", cache.one_step ? "B,S" : "B,T,S");
    const s2s::AttentionShape shape = checked;
    s2s::AttentionParams<T> p;
    s2s::AttentionParamGrads<T> dp;
    std::vector<py::array> w;    // the parameters, as saved
    std::vector<Array<T>> dw;    // their gradients, same shapes
    py::tuple dparams(n_params);
    for (size_t i = 0; i < n_params; ++i) {
      w.push_back(cache.params[i].cast<py::array>());
      dw.push_back(Array<T>(std::vector<py::ssize_t>(w[i].shape(), w[i].shape() + w[i].ndim())));
      dparams[i] = dw[i];
    }
    if (spec.kind == s2s::ScoreKind::general || spec.kind == s2s::ScoreKind::location) {
      p.w_a = cptr<T>(w[0]);
      dp.w_a = dw[0].mutable_data();
    }
    if (spec.kind == s2s::ScoreKind::concat) {
      p.w_q = cptr<T>(w[0]);
      p.w_k = cptr<T>(w[1]);
      p.v = cptr<T>(w[2]);
      dp.w_q = dw[0].mutable_data();
      dp.w_k = dw[1].mutable_data();
      dp.v = dw[2].mutable_data();
      if (n_params == 4) {
        p.b_q = cptr<T>(w[3]);
        dp.b_q = dw[3].mutable_data();
      }
    }
    auto dhs = empty<T>({B, S, H}), dq = empty<T>({B, T_steps, H});
    const int64_t* len = lengths_ptr(cache.lengths);
    const T* qp = cptr_or_null<T>(cache.query_proj);
    const T* kp = cptr_or_null<T>(cache.key_proj);
    {
      py::gil_scoped_release nogil;
      s2s::attention_weight_backward<T>(dhs.mutable_data(), dq.mutable_data(), dp, da.data(), cptr<T>(cache.a), qp,
                                        kp, cptr<T>(cache.hs), cptr<T>(cache.q), spec.kind, p, len, shape);
    }
    py::array dq_out = cache.one_step ? py::array(dq.reshape({B, H})) : py::array(dq);
    return py::make_tuple(dhs, dq_out, dparams);
  });
}

py::array weight_sum_forward(py::handle hs_in, py::handle a_in) {
  Checker ck("weight_sum_forward");
  const py::array hs_raw = ck.float_array(hs_in, "hs");
  const bool one_step = is_one_step(ck, a_in, "a", "[B, S] (one step) or [B, T, S] (all steps)");
  return with_dtype(hs_raw, [&](auto tag) -> py::array {
    using T = decltype(tag);
    auto hs = ck.floats<T>(hs_in, "hs", "B,S,H");
    auto a = ck.floats<T>(a_in, "a", one_step ? "B,S" : "B,T,S");
    const int64_t B = ck.dim('B'), S = ck.dim('S'), H = ck.dim('H'), T_steps = one_step ? 1 : ck.dim('T');
    auto c = empty<T>({B, T_steps, H});
    {
      py::gil_scoped_release nogil;
      s2s::weight_sum_forward<T>(c.mutable_data(), hs.data(), a.data(), B, T_steps, S, H);
    }
    return one_step ? py::array(c.reshape({B, H})) : py::array(c);
  });
}

py::tuple weight_sum_backward(py::handle dc_in, py::handle hs_in, py::handle a_in) {
  Checker ck("weight_sum_backward");
  const py::array hs_raw = ck.float_array(hs_in, "hs");
  const bool one_step = is_one_step(ck, a_in, "a", "[B, S] (one step) or [B, T, S] (all steps)");
  return with_dtype(hs_raw, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto hs = ck.floats<T>(hs_in, "hs", "B,S,H");
    auto a = ck.floats<T>(a_in, "a", one_step ? "B,S" : "B,T,S");
    auto dc = ck.floats<T>(dc_in, "dc", one_step ? "B,H" : "B,T,H");
    const int64_t B = ck.dim('B'), S = ck.dim('S'), H = ck.dim('H'), T_steps = one_step ? 1 : ck.dim('T');
    auto dhs = empty<T>({B, S, H}), da = empty<T>({B, T_steps, S});
    {
      py::gil_scoped_release nogil;
      s2s::weight_sum_backward<T>(dhs.mutable_data(), da.mutable_data(), dc.data(), hs.data(), a.data(), B, T_steps,
                                  S, H);
    }
    py::array da_out = one_step ? py::array(da.reshape({B, S})) : py::array(da);
    return py::make_tuple(dhs, da_out);
  });
}

// ---- dense layer -------------------------------------------------------------------------------

s2s::Activation parse_activation(const Checker& ck, py::handle act_in) {
  if (!py::isinstance<py::str>(act_in))
    ck.type_error("activation must be a str ('none' or 'tanh'), got " + type_name(act_in));
  const std::string act = py::str(act_in);
  if (act == "none") return s2s::Activation::none;
  if (act == "tanh") return s2s::Activation::tanh;
  ck.value_error("activation must be 'none' or 'tanh', got '" + act + "'");
}

py::array linear_forward(py::handle x_in, py::handle w_in, py::handle b_in, py::handle act_in) {
  Checker ck("linear_forward");
  const py::array x_raw = ck.float_array(x_in, "x");
  const s2s::Activation act = parse_activation(ck, act_in);
  return with_dtype(x_raw, [&](auto tag) -> py::array {
    using T = decltype(tag);
    auto x = ck.floats<T>(x_in, "x", "N,I");
    auto w = ck.floats<T>(w_in, "w", "O,I");
    const bool has_bias = !b_in.is_none();
    Array<T> b = has_bias ? ck.floats<T>(b_in, "b", "O") : Array<T>();
    const int64_t N = ck.dim('N'), I = ck.dim('I'), O = ck.dim('O');
    auto y = empty<T>({N, O});
    {
      py::gil_scoped_release nogil;
      s2s::linear_forward<T>(y.mutable_data(), x.data(), w.data(), has_bias ? b.data() : nullptr, N, I, O, act);
    }
    return y;
  });
}

py::tuple linear_backward(py::handle dy_in, py::handle x_in, py::handle w_in, py::handle y_in, py::handle act_in,
                          bool need_dx) {
  Checker ck("linear_backward");
  const py::array x_raw = ck.float_array(x_in, "x");
  const s2s::Activation act = parse_activation(ck, act_in);
  return with_dtype(x_raw, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    auto x = ck.floats<T>(x_in, "x", "N,I");
    auto w = ck.floats<T>(w_in, "w", "O,I");
    auto dy = ck.floats<T>(dy_in, "dy", "N,O");
    const bool tanh = act == s2s::Activation::tanh;
    if (tanh && y_in.is_none()) ck.value_error("y (the forward's output) is needed for activation 'tanh'");
    Array<T> y = tanh ? ck.floats<T>(y_in, "y", "N,O") : Array<T>();
    const int64_t N = ck.dim('N'), I = ck.dim('I'), O = ck.dim('O');
    Array<T> dx = need_dx ? empty<T>({N, I}) : Array<T>();
    auto dw = empty<T>({O, I});
    auto db = empty<T>({O});
    {
      py::gil_scoped_release nogil;
      s2s::linear_backward<T>(need_dx ? dx.mutable_data() : nullptr, dw.mutable_data(), db.mutable_data(),
                              dy.data(), x.data(), w.data(), tanh ? y.data() : nullptr, N, I, O, act);
    }
    return py::make_tuple(need_dx ? py::object(dx) : py::object(py::none()), dw, db);
  });
}

// ---- optimiser ---------------------------------------------------------------------------------

// A list of numpy arrays, each C-contiguous (and writeable where it is updated).
std::vector<py::array> array_list(const Checker& ck, py::handle seq, const char* name, bool writeable) {
  std::vector<py::array> out;
  for (py::handle item : seq) {
    if (!py::isinstance<py::array>(item))
      ck.type_error(std::string(name) + " must hold numpy arrays, got " + type_name(item));
    py::array a = py::reinterpret_borrow<py::array>(item);
    if (!a.dtype().attr("isnative").cast<bool>())
      ck.type_error(std::string(name) + "[" + std::to_string(out.size()) + "] has non-native byte order " +
                    std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
      ck.value_error(std::string(name) + "[" + std::to_string(out.size()) + "] must be C-contiguous");
    if (writeable && !a.writeable())
      ck.value_error(std::string(name) + "[" + std::to_string(out.size()) + "] must be writeable");
    out.push_back(a);
  }
  return out;
}

double grad_sum_squares(py::handle grads_in) {
  Checker ck("grad_sum_squares");
  const std::vector<py::array> grads = array_list(ck, grads_in, "grads", false);
  std::vector<std::pair<const void*, int64_t>> spans;
  std::vector<bool> f64;
  for (size_t i = 0; i < grads.size(); ++i) {
    const char kind = grads[i].dtype().kind();
    if (kind != 'f' || (grads[i].itemsize() != 4 && grads[i].itemsize() != 8))
      ck.type_error("grads[" + std::to_string(i) + "] must be float32 or float64, got dtype " +
                    std::string(py::str(grads[i].dtype())));
    spans.emplace_back(grads[i].data(), grads[i].size());
    f64.push_back(grads[i].itemsize() == 8);
  }
  py::gil_scoped_release nogil;
  double total = 0;
  for (size_t i = 0; i < spans.size(); ++i)
    total += f64[i] ? s2s::sum_squares(static_cast<const double*>(spans[i].first), spans[i].second)
                    : s2s::sum_squares(static_cast<const float*>(spans[i].first), spans[i].second);
  return total;
}

void adam_update(py::handle params_in, py::handle grads_in, py::handle m_in, py::handle v_in, double scale,
                 double beta1, double beta2, double eps, double step_size, double inv_sqrt_bias2) {
  Checker ck("adam_update");
  const auto params = array_list(ck, params_in, "params", true), grads = array_list(ck, grads_in, "grads", false);
  const auto ms = array_list(ck, m_in, "m", true), vs = array_list(ck, v_in, "v", true);
  if (grads.size() != params.size() || ms.size() != params.size() || vs.size() != params.size())
    ck.value_error("params, grads, m and v must have the same length; got " + std::to_string(params.size()) + ", " +
                   std::to_string(grads.size()) + ", " + std::to_string(ms.size()) + ", " + std::to_string(vs.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const py::array* group[4] = {&params[i], &grads[i], &ms[i], &vs[i]};
    const char* names[4] = {"params", "grads", "m", "v"};
    for (int j = 0; j < 4; ++j) {
      if (!group[j]->dtype().is(params[i].dtype()) || params[i].dtype().kind() != 'f' ||
          (params[i].itemsize() != 4 && params[i].itemsize() != 8))
        ck.type_error(std::string(names[j]) + "[" + std::to_string(i) + "] has dtype " +
                      std::string(py::str(group[j]->dtype())) + "; all four must be params[" + std::to_string(i) +
                      "]'s float32 or float64");
      if (group[j]->size() != params[i].size())
        ck.value_error(std::string(names[j]) + "[" + std::to_string(i) + "] has " + std::to_string(group[j]->size()) +
                       " elements; params[" + std::to_string(i) + "] has " + std::to_string(params[i].size()));
    }
  }
  const s2s::AdamStep step{scale, beta1, beta2, eps, step_size, inv_sqrt_bias2};
  py::gil_scoped_release nogil;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].itemsize() == 8)
      s2s::adam_update(static_cast<double*>(const_cast<void*>(params[i].data())),
                       static_cast<double*>(const_cast<void*>(ms[i].data())),
                       static_cast<double*>(const_cast<void*>(vs[i].data())),
                       static_cast<const double*>(grads[i].data()), params[i].size(), step);
    else
      s2s::adam_update(static_cast<float*>(const_cast<void*>(params[i].data())),
                       static_cast<float*>(const_cast<void*>(ms[i].data())),
                       static_cast<float*>(const_cast<void*>(vs[i].data())),
                       static_cast<const float*>(grads[i].data()), params[i].size(), step);
  }
}

// ---- the inference engine ----------------------------------------------------------------------

s2s::EngineConfig engine_config_values(const std::function<py::object(const char*)>& get,
                                       const std::function<py::object(const char*, py::object)>& get_or);

s2s::EngineConfig engine_config(const py::dict& d) {
  auto get = [&](const char* key) -> py::object {
    if (!d.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
    return d[key];
  };
  auto get_or = [&](const char* key, py::object fallback) -> py::object {
    return d.contains(key) ? py::object(d[key]) : fallback;
  };
  s2s::EngineConfig c;
  try {
    c = engine_config_values(get, get_or);
  } catch (const py::cast_error&) {
    throw py::type_error("config holds a value of the wrong type (integers, bools and strings expected)");
  }
  try {
    s2s::check_engine_config(c);  // the model file's rules, before any size is computed from c
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string("config: ") + e.what());
  }
  return c;
}

s2s::EngineConfig engine_config_values(const std::function<py::object(const char*)>& get,
                                       const std::function<py::object(const char*, py::object)>& get_or) {
  s2s::EngineConfig c;
  c.src_vocab = get("src_vocab_size").cast<int64_t>();
  c.tgt_vocab = get("tgt_vocab_size").cast<int64_t>();
  c.embed = get("embed_size").cast<int64_t>();
  c.hidden = get("hidden_size").cast<int64_t>();
  c.layers = get("num_layers").cast<int64_t>();
  c.bidirectional = get("bidirectional").cast<bool>();
  c.max_source_length = get("max_source_length").cast<int64_t>();
  const py::object att = get("attention");
  const std::string kind = att.is_none() ? "none" : att.cast<std::string>();
  if (!s2s::engine_attention_from_name(kind, &c.attention))
    throw py::value_error("config attention '" + kind + "' is not a known kind");
  const std::string style = get("attention_style").cast<std::string>();
  if (style != "luong" && style != "bahdanau") throw py::value_error("config attention_style '" + style + "' is unknown");
  c.bahdanau = style == "bahdanau";
  c.input_feeding = get("input_feeding").cast<bool>();
  // docs/model-format.md's version-2 keys: a config without them has their defaults
  const py::object bridge = get_or("bridge", py::str("linear"));
  const std::string bridge_s = bridge.cast<std::string>();
  if (bridge_s != "linear" && bridge_s != "concat") throw py::value_error("config bridge '" + bridge_s + "' is unknown");
  c.bridge_concat = bridge_s == "concat";
  const std::string act = get_or("combine_activation", py::str("tanh")).cast<std::string>();
  if (act != "tanh" && act != "none") throw py::value_error("config combine_activation '" + act + "' is unknown");
  c.combine_tanh = act == "tanh";
  c.query_bias = get_or("attention_query_bias", py::bool_(false)).cast<bool>();
  return c;
}

struct SourceBatch {
  Array<int64_t> src;
  std::vector<int64_t> lengths;
  int64_t B, S;
};

SourceBatch source_batch(const Checker& ck, py::handle src_in, py::handle lengths_in) {
  py::array raw = py::array::ensure(src_in);
  if (!raw || (raw.dtype().kind() != 'i' && raw.dtype().kind() != 'u'))
    ck.type_error("src_ids must be an integer array [B, S], got " +
                  (raw ? "dtype " + std::string(py::str(raw.dtype())) : type_name(src_in)));
  if (raw.ndim() != 2) ck.value_error("src_ids must have shape [B, S], got shape " + shape_str(raw));
  SourceBatch sb{Array<int64_t>(raw), {}, raw.shape(0), raw.shape(1)};
  if (sb.B < 1 || sb.S < 1) ck.value_error("src_ids must have B, S >= 1, got shape " + shape_str(raw));
  if (lengths_in.is_none()) {
    sb.lengths.assign(static_cast<size_t>(sb.B), sb.S);
  } else {
    py::array l = py::array::ensure(lengths_in);
    if (!l || (l.dtype().kind() != 'i' && l.dtype().kind() != 'u'))
      ck.type_error("lengths must be an integer array [B]");
    if (l.ndim() != 1 || l.shape(0) != sb.B)
      ck.value_error("lengths must have shape (" + std::to_string(sb.B) + ",), got shape " + shape_str(l));
    Array<int64_t> li(l);
    sb.lengths.assign(li.data(), li.data() + sb.B);
  }
  return sb;
}

class PyEngine {
 public:
  PyEngine(const py::dict& config, const py::dict& params, const std::string& weights) {
    if (weights != "float32" && weights != "bfloat16")
      throw py::value_error("dtype must be 'float32' or 'bfloat16', got '" + weights + "'");
    const s2s::EngineConfig cfg = engine_config(config);
    std::map<std::string, s2s::Tensor> tensors;
    for (auto item : params) {
      const std::string name = py::str(item.first);
      Array<float> a(py::reinterpret_borrow<py::object>(item.second));
      s2s::Tensor t;
      for (py::ssize_t i = 0; i < a.ndim(); ++i) t.shape.push_back(a.shape(i));
      t.values.assign(a.data(), a.data() + a.size());
      tensors.emplace(name, std::move(t));
    }
    try {
      py::gil_scoped_release nogil;
      engine_.reset(new s2s::Engine(cfg, tensors, weights == "bfloat16" ? s2s::WeightType::bfloat16
                                                                        : s2s::WeightType::float32));
    } catch (const std::invalid_argument& e) {
      throw py::value_error(std::string("Decoder: ") + e.what());
    }
  }

  py::array greedy(py::handle src_in, py::handle lengths_in, int64_t max_length, int64_t min_length, bool serial) {
    Checker ck("Decoder.greedy");
    SourceBatch sb = source_batch(ck, src_in, lengths_in);
    std::vector<int64_t> tokens;
    int64_t steps = 0;
    try {
      py::gil_scoped_release nogil;
      tokens = engine_->greedy(sb.src.data(), sb.lengths.data(), sb.B, sb.S, max_length, min_length, &steps, serial);
    } catch (const std::invalid_argument& e) {
      ck.value_error(e.what());
    }
    Array<int64_t> out(std::vector<py::ssize_t>{sb.B, steps});
    std::copy(tokens.begin(), tokens.end(), out.mutable_data());
    return out;
  }

  py::list beam(py::handle src_in, py::handle lengths_in, int64_t beam_size, int64_t max_length, int64_t min_length,
                int64_t n_best, double length_penalty, bool serial) {
    Checker ck("Decoder.beam");
    SourceBatch sb = source_batch(ck, src_in, lengths_in);
    std::vector<std::vector<s2s::Hypothesis>> result;
    try {
      py::gil_scoped_release nogil;
      result = engine_->beam(sb.src.data(), sb.lengths.data(), sb.B, sb.S, beam_size, max_length, min_length, n_best,
                             length_penalty, serial);
    } catch (const std::invalid_argument& e) {
      ck.value_error(e.what());
    }
    py::list out;
    for (const auto& hyps : result) {
      py::list items;
      for (const auto& h : hyps) {
        Array<int64_t> tokens(std::vector<py::ssize_t>{static_cast<py::ssize_t>(h.tokens.size())});
        std::copy(h.tokens.begin(), h.tokens.end(), tokens.mutable_data());
        items.append(py::make_tuple(tokens, h.score, h.log_prob));
      }
      out.append(items);
    }
    return out;
  }

  std::string weights() const { return engine_->weight_type() == s2s::WeightType::bfloat16 ? "bfloat16" : "float32"; }

 private:
  std::unique_ptr<s2s::Engine> engine_;
};

// ---- the model file -----------------------------------------------------------------------------

// The C++ API's verdict on a model file: s2sext::Translator::load, the result discarded. Tests hold
// it equal to Seq2Seq.load's on a corpus of good and bad files.
void check_model_file(const std::string& path) {
  try {
    py::gil_scoped_release nogil;
    s2sext::Translator::load(path);
  } catch (const s2s::ModelFileError& e) {
    throw py::value_error(e.what());
  }
}

// ---- the machine --------------------------------------------------------------------------------

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
  return out;
}

std::string set_kernel_path(py::handle name_in) {
  std::string available;
  for (const std::string& p : s2s::cpu_info().available_paths) available += (available.empty() ? "" : ", ") + p;
  if (!py::isinstance<py::str>(name_in))
    throw py::type_error("set_kernel_path: name must be a str, one of " + available + ", got " + type_name(name_in));
  const std::string name = py::cast<std::string>(name_in);
  s2s::KernelPath path;
  if (!s2s::parse_path(name, &path))
    throw py::value_error("set_kernel_path: unknown path '" + name + "'; expected one of portable, avx2, avx512");
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

PYBIND11_MODULE(_core, m) {
  m.doc() = "s2sext's compiled core. Use s2sext.ops; this module's names are private.";

  py::class_<LSTMCellCache>(m, "LSTMCellCache", "What lstm_cell_backward needs from lstm_cell_forward.")
      .def_readonly("x", &LSTMCellCache::x, "[B, I] input")
      .def_readonly("h0", &LSTMCellCache::h0, "[B, H] hidden state in")
      .def_readonly("c0", &LSTMCellCache::c0, "[B, H] cell state in")
      .def_readonly("w_ih", &LSTMCellCache::w_ih, "[4H, I]")
      .def_readonly("w_hh", &LSTMCellCache::w_hh, "[4H, H]")
      .def_readonly("gates", &LSTMCellCache::gates, "[B, 4H] gate activations i, f, g, o")
      .def_readonly("c1", &LSTMCellCache::c1, "[B, H] cell state out");
  py::class_<LSTMCache>(m, "LSTMCache", "What lstm_backward needs from lstm_forward.")
      .def_readonly("hx_all", &LSTMCache::hx_all,
                    "[S+1, B, H+I] row (t, b): [hidden state entering step t | x[b, t]], time-major "
                    "(x zero past a length and in block S, whose h is the final state)")
      .def_readonly("w_ih", &LSTMCache::w_ih, "[4H, I]")
      .def_readonly("w_hh", &LSTMCache::w_hh, "[4H, H]")
      .def_readonly("lengths", &LSTMCache::lengths, "int64 [B] or None")
      .def_readonly("gates", &LSTMCache::gates, "[S, B, 4H] gate activations, time-major (0 past a length)")
      .def_readonly("c_all", &LSTMCache::c_all, "[S+1, B, H] cell state before step 0 and after each step");
  py::class_<AttentionCache>(m, "AttentionCache", "What attention_weight_backward needs from attention_weight_forward.")
      .def_readonly("kind", &AttentionCache::kind)
      .def_readonly("one_step", &AttentionCache::one_step, "True if q was [B, H]")
      .def_readonly("hs", &AttentionCache::hs, "[B, S, H] source states")
      .def_readonly("q", &AttentionCache::q, "[B, T, H] queries (T = 1 for one step)")
      .def_readonly("params", &AttentionCache::params)
      .def_readonly("lengths", &AttentionCache::lengths, "int64 [B] or None")
      .def_readonly("a", &AttentionCache::a, "[B, T, S] weights")
      .def_readonly("query_proj", &AttentionCache::query_proj, "general: q W_a, flat [B*T*H]; concat: W_q q, flat [B*T*A]; else None")
      .def_readonly("key_proj", &AttentionCache::key_proj, "concat: W_k hs, flat [B*S*A]; else None");

  m.def("lstm_cell_forward", &lstm_cell_forward);
  m.def("lstm_cell_backward", &lstm_cell_backward);
  m.def("lstm_forward", &lstm_forward);
  m.def("lstm_backward", &lstm_backward);
  m.def("attention_weight_forward", &attention_weight_forward);
  m.def("attention_weight_backward", &attention_weight_backward);
  m.def("weight_sum_forward", &weight_sum_forward);
  m.def("weight_sum_backward", &weight_sum_backward);
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("activation"));
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("y"),
        py::arg("activation"), py::arg("need_dx"));
  py::class_<PyEngine>(m, "Engine", "The compiled decoder (engine.h); use s2sext.Decoder.")
      .def(py::init<const py::dict&, const py::dict&, const std::string&>(), py::arg("config"), py::arg("params"),
           py::arg("dtype"))
      .def("greedy", &PyEngine::greedy, py::arg("src_ids"), py::arg("lengths"), py::arg("max_length"),
           py::arg("min_length"), py::arg("serial"))
      .def("beam", &PyEngine::beam, py::arg("src_ids"), py::arg("lengths"), py::arg("beam_size"), py::arg("max_length"),
           py::arg("min_length"), py::arg("n_best"), py::arg("length_penalty"), py::arg("serial"))
      .def_property_readonly("dtype", &PyEngine::weights);
  m.def("grad_sum_squares", &grad_sum_squares, py::arg("grads"),
        "Sum of squares of every element of a list of float arrays (float64 accumulation).");
  m.def("adam_update", &adam_update, py::arg("params"), py::arg("grads"), py::arg("m"), py::arg("v"),
        py::arg("scale"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("step_size"),
        py::arg("inv_sqrt_bias2"), "Adam's in-place update of lists of arrays (see optim.h).");
  m.def("memory_cache_info", &memory_cache_info,
        "Bytes of freed output buffers s2sext keeps for reuse (large arrays only).");
  m.def("set_memory_cache_limit", [](size_t limit) { s2s::set_block_cache_limit(limit); }, py::arg("limit_bytes"),
        "Most bytes of freed output buffers kept for reuse (default 256 MiB); 0 frees them and turns the cache off.");
  m.def("check_model_file", &check_model_file, py::arg("path"),
        "Loads a model file with the C++ API (s2sext::Translator::load) and discards the result;\n"
        "ValueError with the C++ loader's message if it refuses the file.");
  m.def("cpu_info", &cpu_info,
        "The machine as s2sext sees it: a dict with 'arch', 'features' (CPU feature -> bool),\n"
        "'available_paths' (SIMD kernel paths this CPU and build can run), 'kernel_path' (the active\n"
        "one), 'env_request' (S2SEXT_KERNEL_PATH as read at start-up), 'blas' (name, config, core,\n"
        "threads of the BLAS library itself) and 'num_threads' (threads s2sext uses).");
  m.def("set_kernel_path", &set_kernel_path, py::arg("name"),
        "Switches the SIMD kernel path ('portable', 'avx2', 'avx512') for the whole process and\n"
        "returns the previous one. ValueError for an unknown name or one this CPU cannot run.");
  m.def("set_num_threads", &set_num_threads, py::arg("threads"),
        "Sets the number of threads s2sext's kernels may use (1 to 1024) and returns the previous\n"
        "count. The default is S2SEXT_NUM_THREADS, else the number of CPUs.");
  m.def("get_num_threads", &s2s::num_threads, "The number of threads s2sext's kernels may use.");
}
