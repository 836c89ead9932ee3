// The out-of-line half of common.h: the Checker's shape parsing, its checks of float arrays and of
// lengths, and the messages of a cache that is not what its forward left. Only a failing check
// builds a message string.
#include "common.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace bindings {

namespace {

std::string letter_name(char letter) { return letter == 'M' ? "S_max" : std::string(1, letter); }

}  // namespace

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

void Checker::value_error(const std::string& msg) const { throw py::value_error(std::string(fn_) + ": " + msg); }
void Checker::type_error(const std::string& msg) const { throw py::type_error(std::string(fn_) + ": " + msg); }

py::array Checker::float_array(py::handle obj, const char* name) const {
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

py::object Checker::lengths(py::handle obj, int64_t min_length, const char* why_min) const {
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

std::vector<Checker::Token> Checker::parse(const char* spec) {
  std::vector<Token> tokens;
  for (const char* p = spec; *p;) {
    int64_t mult = 0;
    while (*p >= '0' && *p <= '9') mult = mult * 10 + (*p++ - '0');
    tokens.push_back({mult ? mult : 1, *p++});
    if (*p == ',') ++p;
  }
  return tokens;
}

std::string Checker::spec_str(const std::vector<Token>& tokens) {
  std::string s = "[";
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i) s += ", ";
    if (tokens[i].mult != 1) s += std::to_string(tokens[i].mult);
    s += letter_name(tokens[i].letter);
  }
  return s + "]";
}

std::string Checker::sources(const std::vector<Token>& tokens) const {
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

void Checker::check_shape(const py::array& arr, const char* name, const char* spec) {
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

bool is_float64(const py::array& arr) { return arr.dtype().kind() == 'f' && arr.itemsize() == 8; }

const int64_t* lengths_ptr(const py::object& lengths) {
  return lengths.is_none() ? nullptr : py::cast<Array<int64_t>>(lengths).data();
}

void cached_array_error(const char* fn, const char* name, const py::handle& obj,
                        const std::vector<py::ssize_t>& shape, const char* dtypes) {
  const std::string got = py::isinstance<py::array>(obj)
      ? "dtype " + std::string(py::str(py::reinterpret_borrow<py::array>(obj).dtype())) + ", shape " +
            shape_str(py::reinterpret_borrow<py::array>(obj))
      : "a " + type_name(obj);
  std::string want = "(";
  for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
  throw py::value_error(std::string(fn) + ": cache." + name + " is not what the forward left (expected a " +
                        "C-contiguous " + dtypes + " array of shape " + want + (shape.size() == 1 ? ",)" : ")") +
                        ", got " + got + "); do not modify the forward's inputs in place before the backward");
}

void check_cached_lengths(const char* fn, const py::object& lengths, int64_t B, int64_t S, int64_t min_length) {
  if (lengths.is_none()) return;
  check_cached<int64_t>(fn, "lengths", lengths, {B});
  const int64_t* len = py::cast<Array<int64_t>>(lengths).data();
  for (int64_t n = 0; n < B; ++n)
    if (len[n] < min_length || len[n] > S)
      throw py::value_error(std::string(fn) + ": cache.lengths[" + std::to_string(n) + "] = " +
                            std::to_string(len[n]) + " is out of range (it was changed after the forward)");
}

}  // namespace bindings
