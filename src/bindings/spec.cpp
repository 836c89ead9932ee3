// The model's spec as the C++ core has it (spec/model_spec.h): a configuration dict read by the one
// configuration reader the model file uses too, the parameter table, the attention kinds and the
// special ids; tests hold them equal to python/s2sext/spec.py's.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.h"
#include "spec/lowercase.h"
#include "spec/model_spec.h"

namespace bindings {

s2s::ModelConfig model_config(const py::dict& d) {
  const py::object numpy = py::module_::import("numpy");
  const py::object numpy_bool = numpy.attr("bool_"), numpy_integer = numpy.attr("integer");
  auto lookup = [&](const char* key) {
    using Kind = s2s::ConfigValue::Kind;
    s2s::ConfigValue v;
    if (!d.contains(key)) return v;
    const py::object value = d[key];
    if (value.is_none()) {
      v.kind = Kind::null;
    } else if (py::isinstance<py::bool_>(value) || py::isinstance(value, numpy_bool)) {  // (before int: True is one)
      v.kind = Kind::boolean;
      v.boolean = value.cast<bool>();
    } else if (py::isinstance<py::int_>(value) || py::isinstance(value, numpy_integer)) {
      v.kind = Kind::integer;
      try {
        v.integer = value.cast<int64_t>();
      } catch (const py::cast_error&) {
        throw py::value_error(std::string("config '") + key + "' is an integer outside int64");
      }
    } else if (py::isinstance<py::str>(value)) {
      v.kind = Kind::string;
      v.string = value.cast<std::string>();
    } else {
      v.kind = Kind::other;
    }
    return v;
  };
  try {
    return s2s::read_model_config(lookup);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

void register_spec(py::module_& m) {
  m.def(
      "parameter_table",
      [](const py::dict& config) {
        py::list table;
        s2s::visit_parameters(model_config(config), [&](const std::string& name, const s2s::Shape& shape) {
          table.append(py::make_tuple(name, py::tuple(py::cast(shape))));
        });
        return table;
      },
      py::arg("config"),
      "[(name, shape)] of every parameter of a configuration dict, in the model file's order: the\n"
      "C++ core's table (spec/model_spec.h); ValueError for a configuration it refuses.");
  m.def(
      "attention_kinds",
      [] {
        py::list kinds;
        for (auto kind : {s2s::AttentionKind::dot, s2s::AttentionKind::scaled_dot, s2s::AttentionKind::general,
                          s2s::AttentionKind::concat, s2s::AttentionKind::location})
          kinds.append(s2s::attention_kind_name(kind));
        return kinds;
      },
      "The attention kinds of a model's configuration, as the C++ core names them.");
  m.def(
      "special_ids", [] {
        py::dict ids;
        const int64_t id_of[4] = {s2s::kPadId, s2s::kSosId, s2s::kEosId, s2s::kUnkId};
        for (int k = 0; k < 4; ++k) ids[s2s::kSpecialTokens[k]] = id_of[k];
        return ids;
      },
      "{token: id} of the special tokens every vocabulary starts with, as the C++ core has them.");
  m.def(
      "lowercase",
      [](const py::str& text) {
        // UTF-8 by Python's codec: a lone surrogate raises its UnicodeEncodeError (a ValueError)
        const py::object encoded = py::reinterpret_steal<py::object>(PyUnicode_AsUTF8String(text.ptr()));
        if (!encoded) throw py::error_already_set();
        std::string utf8 = encoded.cast<std::string>();
        {
          py::gil_scoped_release release;
          utf8 = s2s::lowercase_utf8(utf8);
        }
        return py::str(utf8);
      },
      py::arg("text"),
      "``text`` lowercased by s2sext's one rule (spec/lowercase.h): each code point's own lowercase\n"
      "form, as str.lower gives it for that code point alone, so a word-final capital sigma becomes\n"
      "σ, not ς; the C++ Translator applies the same code.");
  m.def("lowercase_unicode_version", &s2s::lowercase_unicode_version,
        "The Unicode version of the lowercase table (the Python that generated it).");
  m.def(
      "tokenizer_names", [] {
        py::list names;
        for (const char* name : s2s::kTokenizerNames) names.append(name);
        return names;
      },
      "The tokenizers a model's configuration may name, as the C++ model reader accepts them.");
}

}  // namespace bindings
