// The inference engine's bindings: a model's configuration (a dict, checked with the model file's
// rules, spec/model_spec.h's check_model_config), the Engine class that s2sext.Decoder wraps (greedy and
// beam decoding of a batch of source ids without the GIL), and check_model_file, the C++ API's
// verdict on a model file.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/model_file.h"
#include "api/s2sext.h"
#include "common.h"
#include "engine/engine.h"

namespace bindings {

namespace {

s2s::ModelConfig engine_config_values(const std::function<py::object(const char*)>& get,
                                       const std::function<py::object(const char*, py::object)>& get_or);

s2s::ModelConfig engine_config(const py::dict& d) {
  auto get = [&](const char* key) -> py::object {
    if (!d.contains(key)) throw py::value_error(std::string("config is missing '") + key + "'");
    return d[key];
  };
  auto get_or = [&](const char* key, py::object fallback) -> py::object {
    return d.contains(key) ? py::object(d[key]) : fallback;
  };
  s2s::ModelConfig c;
  try {
    c = engine_config_values(get, get_or);
  } catch (const py::cast_error&) {
    throw py::type_error("config holds a value of the wrong type (integers, bools and strings expected)");
  }
  try {
    s2s::check_model_config(c);  // the model file's rules, before any size is computed from c
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string("config: ") + e.what());
  }
  return c;
}

s2s::ModelConfig engine_config_values(const std::function<py::object(const char*)>& get,
                                       const std::function<py::object(const char*, py::object)>& get_or) {
  s2s::ModelConfig c;
  c.src_vocab = get("src_vocab_size").cast<int64_t>();
  c.tgt_vocab = get("tgt_vocab_size").cast<int64_t>();
  c.embed = get("embed_size").cast<int64_t>();
  c.hidden = get("hidden_size").cast<int64_t>();
  c.layers = get("num_layers").cast<int64_t>();
  c.bidirectional = get("bidirectional").cast<bool>();
  c.max_source_length = get("max_source_length").cast<int64_t>();
  const py::object att = get("attention");
  const std::string kind = att.is_none() ? "none" : att.cast<std::string>();
  if (!s2s::attention_kind_from_name(kind, &c.attention))
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
    const s2s::ModelConfig cfg = engine_config(config);
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

  // tokens int64 [B, T], or (tokens, attention float32 [B, T, S]) with return_attention
  py::object greedy(py::handle src_in, py::handle lengths_in, int64_t max_length, int64_t min_length, bool serial,
                    bool return_attention) {
    Checker ck("Decoder.greedy");
    SourceBatch sb = source_batch(ck, src_in, lengths_in);
    s2s::SearchOptions options;
    options.max_length = max_length;
    options.min_length = min_length;
    options.return_attention = return_attention;
    s2s::GreedyOutput found;
    try {
      py::gil_scoped_release nogil;
      found = engine_->greedy(sb.src.data(), sb.lengths.data(), sb.B, sb.S, options, serial);
    } catch (const std::invalid_argument& e) {
      ck.value_error(e.what());
    }
    Array<int64_t> tokens(std::vector<py::ssize_t>{sb.B, found.steps});
    std::copy(found.tokens.begin(), found.tokens.end(), tokens.mutable_data());
    if (!return_attention) return std::move(tokens);
    Array<float> attention(std::vector<py::ssize_t>{sb.B, found.steps, sb.S});
    std::copy(found.attention.begin(), found.attention.end(), attention.mutable_data());
    return py::make_tuple(tokens, attention);
  }

  // per input a list of (tokens int64 [n], score, log_prob[, attention float32 [n, S]]), best first
  py::list beam(py::handle src_in, py::handle lengths_in, int64_t beam_size, int64_t max_length, int64_t min_length,
                int64_t n_best, double length_penalty, bool serial, bool return_attention) {
    Checker ck("Decoder.beam");
    SourceBatch sb = source_batch(ck, src_in, lengths_in);
    s2s::SearchOptions options;
    options.beam_size = beam_size;
    options.max_length = max_length;
    options.min_length = min_length;
    options.n_best = n_best;
    options.length_penalty = length_penalty;
    options.return_attention = return_attention;
    std::vector<std::vector<s2s::Hypothesis>> result;
    try {
      py::gil_scoped_release nogil;
      result = engine_->beam(sb.src.data(), sb.lengths.data(), sb.B, sb.S, options, serial);
    } catch (const std::invalid_argument& e) {
      ck.value_error(e.what());
    }
    py::list out;
    for (const auto& hyps : result) {
      py::list items;
      for (const auto& h : hyps) {
        const auto n = static_cast<py::ssize_t>(h.tokens.size());
        Array<int64_t> tokens(std::vector<py::ssize_t>{n});
        std::copy(h.tokens.begin(), h.tokens.end(), tokens.mutable_data());
        if (!return_attention) {
          items.append(py::make_tuple(tokens, h.score, h.log_prob));
          continue;
        }
        Array<float> attention(std::vector<py::ssize_t>{n, sb.S});
        std::copy(h.attention.begin(), h.attention.end(), attention.mutable_data());
        items.append(py::make_tuple(tokens, h.score, h.log_prob, attention));
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

}  // namespace

void register_engine(py::module_& m) {
  py::class_<PyEngine>(m, "Engine", "The compiled decoder (engine.h); use s2sext.Decoder.")
      .def(py::init<const py::dict&, const py::dict&, const std::string&>(), py::arg("config"), py::arg("params"),
           py::arg("dtype"))
      .def("greedy", &PyEngine::greedy, py::arg("src_ids"), py::arg("lengths"), py::arg("max_length"),
           py::arg("min_length"), py::arg("serial"), py::arg("return_attention") = false)
      .def("beam", &PyEngine::beam, py::arg("src_ids"), py::arg("lengths"), py::arg("beam_size"), py::arg("max_length"),
           py::arg("min_length"), py::arg("n_best"), py::arg("length_penalty"), py::arg("serial"),
           py::arg("return_attention") = false)
      .def_property_readonly("dtype", &PyEngine::weights);
  m.def("check_model_file", &check_model_file, py::arg("path"),
        "Loads a model file with the C++ API (s2sext::Translator::load) and discards the result;\n"
        "ValueError with the C++ loader's message if it refuses the file.");
}

}  // namespace bindings
