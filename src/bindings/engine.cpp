// The compiled decoder's bindings: the Engine class that s2sext.Decoder wraps (greedy and beam
// decoding of a batch of source ids without the GIL; its configuration read by spec.cpp's
// model_config), and check_model_file, the C++ API's verdict on a model file.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/model_file.h"
#include "api/s2sext.h"
#include "common.h"
#include "engine/engine.h"
#include "engine/range_check.h"
#include "engine/weights.h"
#include "kernels/kernels.h"
#include "runtime/matrix.h"
#include "runtime/quantize.h"

namespace bindings {

namespace {

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

// {name: float32 array} -> the core's tensors (a copy: the core keeps none of Python's memory)
std::map<std::string, s2s::Tensor> tensors_of(const py::dict& params) {
  std::map<std::string, s2s::Tensor> tensors;
  for (auto item : params) {
    const std::string name = py::str(item.first);
    Array<float> a(py::reinterpret_borrow<py::object>(item.second));
    s2s::Tensor t;
    for (py::ssize_t i = 0; i < a.ndim(); ++i) t.shape.push_back(a.shape(i));
    t.values.assign(a.data(), a.data() + a.size());
    tensors.emplace(name, std::move(t));
  }
  return tensors;
}

// The engine's checks of a model's weights without building it: each parameter against the
// table, then the float32 range rule (engine/range_check.h).
void check_float32_range(const py::dict& config, const py::dict& params) {
  const s2s::ModelConfig cfg = model_config(config);
  const std::map<std::string, s2s::Tensor> tensors = tensors_of(params);
  try {
    py::gil_scoped_release nogil;
    s2s::check_engine_parameters(cfg, tensors);
    s2s::check_float32_range(cfg, tensors);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

// Per input a list of hypotheses, best first, each a tuple: (tokens int64 [n], score, log_prob),
// then attention float32 [n, S] when asked (beam); or, with `every_field` (generate), always five
// fields: (tokens, score, log_prob, token_scores float64 [n] or None, attention or None).
py::list hypotheses_list(const std::vector<std::vector<s2s::Hypothesis>>& result, py::ssize_t S, bool with_attention,
                         bool with_token_scores, bool every_field) {
  py::list out;
  for (const auto& hyps : result) {
    py::list items;
    for (const auto& h : hyps) {
      const auto n = static_cast<py::ssize_t>(h.tokens.size());
      Array<int64_t> tokens(std::vector<py::ssize_t>{n});
      std::copy(h.tokens.begin(), h.tokens.end(), tokens.mutable_data());
      py::object scores = py::none(), attention = py::none();
      if (with_token_scores) {
        Array<double> a(std::vector<py::ssize_t>{n});
        std::copy(h.token_scores.begin(), h.token_scores.end(), a.mutable_data());
        scores = a;
      }
      if (with_attention) {
        Array<float> a(std::vector<py::ssize_t>{n, S});
        std::copy(h.attention.begin(), h.attention.end(), a.mutable_data());
        attention = a;
      }
      if (every_field)
        items.append(py::make_tuple(tokens, h.score, h.log_prob, scores, attention));
      else if (with_attention)
        items.append(py::make_tuple(tokens, h.score, h.log_prob, attention));
      else
        items.append(py::make_tuple(tokens, h.score, h.log_prob));
    }
    out.append(items);
  }
  return out;
}

class PyEngine {
 public:
  PyEngine(const py::dict& config, const py::dict& params, const std::string& weights) {
    if (weights != "float32" && weights != "bfloat16" && weights != "int8")
      throw py::value_error("dtype must be 'float32', 'bfloat16' or 'int8', got '" + weights + "'");
    const s2s::ModelConfig cfg = model_config(config);
    const std::map<std::string, s2s::Tensor> tensors = tensors_of(params);
    try {
      py::gil_scoped_release nogil;
      engine_.reset(new s2s::Engine(cfg, tensors, weights == "bfloat16" ? s2s::WeightType::bfloat16
                                                  : weights == "int8"   ? s2s::WeightType::int8
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
    const s2s::SearchOptions options{1, max_length, min_length, 1, 0.0, return_attention};
    s2s::GreedyResult found;
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
    const s2s::SearchOptions options{beam_size, max_length, min_length, n_best, length_penalty, return_attention};
    std::vector<std::vector<s2s::Hypothesis>> result;
    try {
      py::gil_scoped_release nogil;
      result = engine_->beam(sb.src.data(), sb.lengths.data(), sb.B, sb.S, options, serial);
    } catch (const std::invalid_argument& e) {
      ck.value_error(e.what());
    }
    return hypotheses_list(result, sb.S, return_attention, false, false);
  }

  // Every option of the one search (s2sext.Decoder.generate checks them first): per input a
  // list of (tokens int64 [n], score, log_prob, token_scores float64 [n] or None, attention
  // float32 [n, S] or None), best first. beam_size 1 runs the greedy path (and sampling).
  py::list generate(py::handle src_in, py::handle lengths_in, int64_t beam_size, int64_t max_length,
                    int64_t min_length, int64_t n_best, double length_penalty, double coverage_penalty,
                    int64_t no_repeat_ngram_size, py::handle target_prefix, double sampling_temperature,
                    int64_t sampling_topk, double sampling_topp, uint64_t seed, bool serial, bool return_attention,
                    bool return_token_scores) {
    Checker ck("Decoder.generate");
    SourceBatch sb = source_batch(ck, src_in, lengths_in);
    s2s::SearchOptions o{beam_size, max_length, min_length, n_best, length_penalty, return_attention};
    o.coverage_penalty = coverage_penalty;
    o.no_repeat_ngram_size = no_repeat_ngram_size;
    o.sampling_temperature = sampling_temperature;
    o.sampling_topk = sampling_topk;
    o.sampling_topp = sampling_topp;
    o.seed = seed;
    o.return_token_scores = return_token_scores;
    if (!target_prefix.is_none())
      for (auto entry : target_prefix) {
        std::vector<int64_t> ids;
        if (!entry.is_none())
          for (auto id : entry) ids.push_back(py::cast<int64_t>(id));
        o.target_prefix.push_back(std::move(ids));
      }
    std::vector<std::vector<s2s::Hypothesis>> result;
    try {
      py::gil_scoped_release nogil;
      result = engine_->generate(sb.src.data(), sb.lengths.data(), sb.B, sb.S, o, serial);
    } catch (const std::invalid_argument& e) {
      ck.value_error(e.what());
    }
    return hypotheses_list(result, sb.S, return_attention, return_token_scores, true);
  }

  std::string weights() const {
    switch (engine_->weight_type()) {
      case s2s::WeightType::bfloat16: return "bfloat16";
      case s2s::WeightType::int8: return "int8";
      default: return "float32";
    }
  }

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

// ---- the int8 rule -----------------------------------------------------------------------------

py::tuple quantize_int8(py::handle w_in) {
  Checker ck("quantize_int8");
  py::array arr = ck.float_array(w_in, "w");
  if (arr.ndim() != 2) ck.value_error("w must be 2-D [N, K], got shape " + shape_str(arr));
  Array<float> w = ck.floats<float>(arr, "w", "N,K");
  const int64_t N = w.shape(0), K = w.shape(1);
  const float* x = w.data();
  for (int64_t i = 0; i < N * K; ++i)
    if (!std::isfinite(x[i]))
      ck.value_error("w must be finite in float32, got " + std::to_string(x[i]) + " at row " + std::to_string(i / K) +
                     ", column " + std::to_string(i % K));
  py::array_t<int8_t> q({static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(K)});
  Array<float> scale(std::vector<py::ssize_t>{static_cast<py::ssize_t>(N)});
  int8_t* qd = q.mutable_data();
  float* sd = scale.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (int64_t n = 0; n < N; ++n) {
      sd[n] = s2s::int8_row_scale(x + n * K, K);
      s2s::quantize_int8_row(x + n * K, K, sd[n], qd + n * K);
    }
  }
  return py::make_tuple(q, scale);
}

Array<float> dequantize_int8(const py::array& q_in, py::handle scale_in) {
  Checker ck("dequantize_int8");
  if (!py::isinstance<py::array_t<int8_t>>(q_in) || q_in.dtype().kind() != 'i' || q_in.itemsize() != 1)
    ck.type_error("q must be an int8 array, got " + type_name(q_in) + " of dtype " + std::string(py::str(q_in.dtype())));
  if (q_in.ndim() != 2) ck.value_error("q must be 2-D [N, K], got shape " + shape_str(q_in));
  auto q = py::array_t<int8_t, py::array::c_style | py::array::forcecast>::ensure(q_in);
  ck.bind('N', q.shape(0), "q");
  Array<float> scale = ck.floats<float>(scale_in, "scale", "N");
  const int64_t N = q.shape(0), K = q.shape(1);
  Array<float> out(std::vector<py::ssize_t>{static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(K)});
  float* od = out.mutable_data();
  const int8_t* qd = q.data();
  const float* sd = scale.data();
  {
    py::gil_scoped_release nogil;
    for (int64_t n = 0; n < N; ++n) s2s::dequantize_int8_row(qd + n * K, K, sd[n], od + n * K);
  }
  return out;
}

// ---- the int8 products (the kernels of the active path, and matmul) ------------------------------

// A 2-D int8 array (C-contiguous copy), else TypeError / ValueError naming it.
py::array_t<int8_t, py::array::c_style> int8_matrix(const Checker& ck, const py::handle& obj, const char* name) {
  const py::array arr = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj) : py::array();
  if (!arr || arr.dtype().kind() != 'i' || arr.itemsize() != 1)
    ck.type_error(std::string(name) + " must be an int8 array, got " + type_name(obj) +
                  (arr ? " of dtype " + std::string(py::str(arr.dtype())) : std::string()));
  if (arr.ndim() != 2) ck.value_error(std::string(name) + " must be 2-D, got shape " + shape_str(arr));
  return py::array_t<int8_t, py::array::c_style | py::array::forcecast>::ensure(arr);
}

// Rows of x [M, K] quantized by the active kernel path's quantize_rows_i8: (q int8 [M, K], scale [M]).
py::tuple int8_quantize_rows(py::handle x_in) {
  Checker ck("int8_quantize_rows");
  py::array arr = ck.float_array(x_in, "x");
  if (arr.ndim() != 2) ck.value_error("x must be 2-D [M, K], got shape " + shape_str(arr));
  Array<float> x = ck.floats<float>(arr, "x", "M,K");
  const int64_t M = x.shape(0), K = x.shape(1), Kp = s2s::int8_padded_cols(K);
  for (int64_t i = 0; i < M * K; ++i)
    if (!std::isfinite(x.data()[i])) ck.value_error("x must be finite in float32");
  s2s::Buffer<int8_t> padded(static_cast<size_t>(M * Kp));
  py::array_t<int8_t> q({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(K)});
  Array<float> scale(std::vector<py::ssize_t>{static_cast<py::ssize_t>(M)});
  {
    py::gil_scoped_release nogil;
    s2s::kernels<float>().quantize_rows_i8(x.data(), K, padded.data(), Kp, scale.mutable_data(), M, K, Kp);
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = Kp - 1; k >= K; --k)
      if (padded[m * Kp + k] != 0) ck.value_error("quantize_rows_i8 left a nonzero in the padding");
  for (int64_t m = 0; m < M; ++m) std::copy_n(padded.data() + m * Kp, K, q.mutable_data() + m * K);
  return py::make_tuple(q, scale);
}

// The active path's gemm_i8: q_x int8 [M, K], q_w int8 [N, K] -> int32 [M, N] (rows padded to
// 64 bytes with zeros, as the engine stores them).
py::array_t<int32_t> int8_gemm(py::handle q_x_in, py::handle q_w_in) {
  Checker ck("int8_gemm");
  auto q_x = int8_matrix(ck, q_x_in, "q_x");
  auto q_w = int8_matrix(ck, q_w_in, "q_w");
  const int64_t M = q_x.shape(0), K = q_x.shape(1), N = q_w.shape(0), Kp = s2s::int8_padded_cols(K);
  if (q_w.shape(1) != K)
    ck.value_error("q_w must have K=" + std::to_string(K) + " columns (those of q_x), got shape " + shape_str(q_w));
  if (Kp > 65536) ck.value_error("K must be at most 65536, got " + std::to_string(K));
  s2s::Buffer<int8_t> w(static_cast<size_t>(N * Kp), 0), x(static_cast<size_t>(M * Kp), 0);
  std::vector<int32_t> row_sum(static_cast<size_t>(N), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) row_sum[n] += w[n * Kp + k] = q_w.data()[n * K + k];
  for (int64_t m = 0; m < M; ++m) std::copy_n(q_x.data() + m * K, K, x.data() + m * Kp);
  for (int8_t v : w)
    if (v == -128) ck.value_error("q_w must lie in [-127, 127]");
  for (int8_t v : x)
    if (v == -128) ck.value_error("q_x must lie in [-127, 127]");
  py::array_t<int32_t> out({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)});
  {
    py::gil_scoped_release nogil;
    s2s::kernels<float>().gemm_i8(w.data(), Kp, row_sum.data(), x.data(), Kp, out.mutable_data(), N, N, Kp, M);
  }
  return out;
}

// matmul (runtime/matrix.h) with w float32 [N, K] stored as int8: y [M, N] = x [M, K] @ w^T, or
// y + that when y is given.
Array<float> int8_matmul(py::handle w_in, py::handle x_in, py::handle y_in) {
  Checker ck("int8_matmul");
  Array<float> w = ck.floats<float>(w_in, "w", "N,K");
  Array<float> x = ck.floats<float>(x_in, "x", "M,K");
  const int64_t N = w.shape(0), K = w.shape(1), M = x.shape(0);
  for (const Array<float>* a : {&w, &x})
    for (int64_t i = 0; i < a->size(); ++i)
      if (!std::isfinite(a->data()[i])) ck.value_error("w and x must be finite in float32");
  Array<float> y(std::vector<py::ssize_t>{static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)});
  if (!y_in.is_none()) {  // a copy: the input is not written
    Array<float> given = ck.floats<float>(y_in, "y", "M,N");
    std::copy_n(given.data(), M * N, y.mutable_data());
  }
  {
    py::gil_scoped_release nogil;
    const s2s::WeightMatrix W = s2s::prepare_weights(w.data(), N, K, 0, K, s2s::WeightType::int8);
    s2s::matmul(W, x.data(), M, y.mutable_data(), !y_in.is_none());
  }
  return y;
}
// ---- prepared weights and their product (runtime/matrix.h), for tests and measurements ------------

class PyWeightMatrix {
 public:
  PyWeightMatrix(py::handle w_in, const std::string& weight_type) {
    Checker ck("WeightMatrix");
    py::array arr = ck.float_array(w_in, "w");
    if (arr.ndim() != 2) ck.value_error("w must be 2-D [N, K], got shape " + shape_str(arr));
    Array<float> w = ck.floats<float>(arr, "w", "N,K");
    if (weight_type != "float32" && weight_type != "float32_panels" && weight_type != "bfloat16")
      ck.value_error("weight_type must be 'float32', 'float32_panels' or 'bfloat16', got '" + weight_type + "'");
    const s2s::WeightType type = weight_type == "bfloat16" ? s2s::WeightType::bfloat16 : s2s::WeightType::float32;
    py::gil_scoped_release nogil;
    m_ = s2s::prepare_weights(w.data(), w.shape(0), w.shape(1), 0, w.shape(1), type);
    if (weight_type == "float32_panels") s2s::pack_panels(m_);
  }

  // x [M, K] @ w^T (+ y when y is given, as matmul's accumulate) -> a new [M, N] array.
  Array<float> matmul(py::handle x_in, py::handle y_in, const std::string& product) const {
    Checker ck("WeightMatrix.matmul");
    ck.bind('N', m_.rows, "the weights");
    ck.bind('K', m_.cols, "the weights");
    Array<float> x = ck.floats<float>(x_in, "x", "M,K");
    const int64_t M = x.shape(0);
    s2s::ProductRoute route = s2s::ProductRoute::automatic;
    if (product == "kernel") route = s2s::ProductRoute::kernel;
    else if (product == "blas") route = s2s::ProductRoute::blas;
    else if (product != "auto") ck.value_error("product must be 'auto', 'kernel' or 'blas', got '" + product + "'");
    Array<float> y = y_in.is_none() ? empty<float>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(m_.rows)})
                                     : Array<float>(ck.floats<float>(y_in, "y", "M,N").attr("copy")());
    float* yd = y.mutable_data();
    const bool accumulate = !y_in.is_none();
    {
      py::gil_scoped_release nogil;
      s2s::matmul(m_, x.data(), M, yd, accumulate, route);
    }
    return y;
  }

  std::string weight_type() const { return m_.is_bf16() ? "bfloat16" : m_.in_panels() ? "float32_panels" : "float32"; }

 private:
  s2s::WeightMatrix m_;
};

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
      .def("generate", &PyEngine::generate, py::arg("src_ids"), py::arg("lengths"), py::arg("beam_size"),
           py::arg("max_length"), py::arg("min_length"), py::arg("n_best"), py::arg("length_penalty"),
           py::arg("coverage_penalty"), py::arg("no_repeat_ngram_size"), py::arg("target_prefix"),
           py::arg("sampling_temperature"), py::arg("sampling_topk"), py::arg("sampling_topp"), py::arg("seed"),
           py::arg("serial"), py::arg("return_attention"), py::arg("return_token_scores"))
      .def_property_readonly("dtype", &PyEngine::weights);
  m.def("check_float32_range", &check_float32_range, py::arg("config"), py::arg("params"),
        "ValueError unless every parameter of the configuration is present with its shape and no\n"
        "pre-activation, score or logit of decoding can overflow float32 (the engine's checks).");
  m.def("quantize_int8", &quantize_int8, py::arg("w"),
        "The int8 rule (runtime/quantize.h): w float32 [N, K], finite -> (q int8 [N, K], scale float32 [N]),\n"
        "symmetric per row, idempotent through dequantize_int8.");
  m.def("dequantize_int8", &dequantize_int8, py::arg("q"), py::arg("scale"),
        "q int8 [N, K], scale [N] -> float32 [N, K] = q * scale (the values an int8 matrix stands for).");
  m.def("int8_quantize_rows", &int8_quantize_rows, py::arg("x"),
        "Rows of x float32 [M, K] by the active kernel path's int8 quantizer -> (q int8 [M, K], scale [M])\n"
        "(a check of the kernels: it must equal quantize_int8).");
  m.def("int8_gemm", &int8_gemm, py::arg("q_x"), py::arg("q_w"),
        "The active kernel path's int8 product: q_x int8 [M, K], q_w int8 [N, K] -> int32 [M, N] = q_x @ q_w^T.");
  m.def("int8_matmul", &int8_matmul, py::arg("w"), py::arg("x"), py::arg("y") = py::none(),
        "The engine's int8 product: w float32 [N, K] stored by the int8 rule, x float32 [M, K] quantized per\n"
        "row -> y float32 [M, N] (+ y when given).");
  py::class_<PyWeightMatrix>(m, "WeightMatrix",
                             "Weights prepared for inference (runtime/matrix.h) and their product, for tests and\n"
                             "measurements: WeightMatrix(w [N, K], weight_type 'float32' | 'float32_panels' |\n"
                             "'bfloat16'); 'float32_panels' is the compiled decoder's float32 storage (pack_panels).")
      .def(py::init<py::handle, const std::string&>(), py::arg("w"), py::arg("weight_type"))
      .def("matmul", &PyWeightMatrix::matmul, py::arg("x"), py::arg("y") = py::none(), py::arg("product") = "auto",
           "x [M, K] -> x @ w^T [M, N] (+ y when y [M, N] is given). product: 'auto' (matmul's choice),\n"
           "'kernel' (gemv_batch) or 'blas' (sgemm) for float32 weights; float32 panels (gemm_panels) and\n"
           "bfloat16 have one product each.")
      .def_property_readonly("weight_type", &PyWeightMatrix::weight_type);
  m.def("check_model_file", &check_model_file, py::arg("path"),
        "Loads a model file with the C++ API (s2sext::Translator::load) and discards the result;\n"
        "ValueError with the C++ loader's message if it refuses the file.");
}

}  // namespace bindings
