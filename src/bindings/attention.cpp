// The attention bindings: the score kinds and their parameters (KindSpec), the weights over the
// source (attention_weight_forward/backward, with the AttentionCache a forward hands its backward)
// and the weighted sum of the source states (weight_sum_forward/backward). Each takes one decoder
// step (q or a 2-D) or all steps (3-D); the core (ops/attention.h) always sees all steps, T = 1 for
// one, and the outputs take the caller's form again.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "ops/attention.h"

namespace bindings {

namespace {

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

// An attention argument that is 2-D for one decoder step and 3-D for all steps: which one it is.
bool is_one_step(const Checker& ck, py::handle obj, const char* name, const char* shapes) {
  const py::array arr = ck.float_array(obj, name);
  if (arr.ndim() != 2 && arr.ndim() != 3)
    ck.value_error(std::string(name) + " must have shape " + shapes + ", got shape " + shape_str(arr));
  return arr.ndim() == 2;
}

// An output the core wrote as [B, T, X]: as [B, X] when the caller passed one step.
py::array caller_steps(py::array out, bool one_step) {
  return one_step ? py::array(out.reshape({out.shape(0), out.shape(2)})) : out;
}

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

// The kind's parameter arrays (or their gradients), in KindSpec order, as the core's
// AttentionParams (or AttentionParamGrads, whose members have the same names).
template <class P, class Ptr>
P params_by_kind(s2s::ScoreKind kind, const std::vector<Ptr>& arrays) {
  P p;
  if (kind == s2s::ScoreKind::general || kind == s2s::ScoreKind::location) p.w_a = arrays[0];
  if (kind == s2s::ScoreKind::concat) {
    p.w_q = arrays[0];
    p.w_k = arrays[1];
    p.v = arrays[2];
    if (arrays.size() == 4) p.b_q = arrays[3];
  }
  return p;
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
    std::vector<const T*> params;
    py::tuple params_out(n_params);
    std::vector<std::string> names;  // the checker keeps pointers to them: reserved, never moved
    names.reserve(n_params);
    for (size_t i = 0; i < n_params; ++i) {
      names.push_back("params[" + std::to_string(i) + "] (" + spec.params[i].first + ")");
      const Array<T> param = ck.floats<T>(params_seq[i], names.back().c_str(), spec.params[i].second);
      params.push_back(param.data());
      params_out[i] = param;  // keeps it alive for the core, and for the backward
    }
    const int64_t A = ck.bound('A') ? ck.dim('A') : 0;
    const int64_t S_max = ck.bound('M') ? ck.dim('M') : 0;
    if (spec.kind == s2s::ScoreKind::location && S > S_max)
      ck.value_error("kind 'location' scores position s by row s of W_a, but hs has S = " + std::to_string(S) +
                     " positions and W_a only S_max = " + std::to_string(S_max) + " rows");
    py::object lengths = ck.lengths(lengths_in, 1, " (attention needs at least one position to attend to)");

    const auto p = params_by_kind<s2s::AttentionParams<T>>(spec.kind, params);
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
    return py::make_tuple(caller_steps(a, one_step), std::move(cache));
  });
}

py::tuple attention_weight_backward(py::handle da_in, py::handle cache_in) {
  const char* fn = "attention_weight_backward";
  Checker ck(fn);
  const auto& cache = require_cache<AttentionCache>(cache_in, fn, "AttentionCache", "attention_weight_forward");
  const KindSpec& spec = parse_kind(ck, py::str(cache.kind));
  return with_dtype(cache.f64, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const int64_t B = cache.B, S = cache.S, H = cache.H, T_steps = cache.T, A = cache.A, S_max = cache.S_max;
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
    const s2s::AttentionShape shape{B, T_steps, S, H, A, S_max};
    if (const int64_t n = s2s::attention_query_proj_size(spec.kind, shape)) check_cached<T>(fn, "query_proj", cache.query_proj, {n});
    if (const int64_t n = s2s::attention_key_proj_size(spec.kind, shape)) check_cached<T>(fn, "key_proj", cache.key_proj, {n});
    ck.bind('B', B, "cache");
    ck.bind('T', T_steps, "cache");
    ck.bind('S', S, "cache");
    auto da = ck.floats<T>(da_in, "da", cache.one_step ? "B,S" : "B,T,S");
    std::vector<const T*> w;  // the parameters, as saved
    std::vector<T*> dw;       // their gradients, same shapes
    py::tuple dparams(n_params);
    for (size_t i = 0; i < n_params; ++i) {
      w.push_back(cptr<T>(cache.params[i].cast<py::array>()));
      Array<T> grad(param_shapes[i]);
      dw.push_back(grad.mutable_data());
      dparams[i] = grad;
    }
    const auto p = params_by_kind<s2s::AttentionParams<T>>(spec.kind, w);
    const auto dp = params_by_kind<s2s::AttentionParamGrads<T>>(spec.kind, dw);
    auto dhs = empty<T>({B, S, H}), dq = empty<T>({B, T_steps, H});
    const int64_t* len = lengths_ptr(cache.lengths);
    const T* qp = cptr_or_null<T>(cache.query_proj);
    const T* kp = cptr_or_null<T>(cache.key_proj);
    {
      py::gil_scoped_release nogil;
      s2s::attention_weight_backward<T>(dhs.mutable_data(), dq.mutable_data(), dp, da.data(), cptr<T>(cache.a), qp,
                                        kp, cptr<T>(cache.hs), cptr<T>(cache.q), spec.kind, p, len, shape);
    }
    return py::make_tuple(dhs, caller_steps(dq, cache.one_step), dparams);
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
    return caller_steps(c, one_step);
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
    return py::make_tuple(dhs, caller_steps(da, one_step));
  });
}

}  // namespace

void register_attention(py::module_& m) {
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
  m.def("attention_weight_forward", &attention_weight_forward, py::arg("hs"), py::arg("q"), py::arg("kind"),
        py::arg("params"), py::arg("lengths"));
  m.def("attention_weight_backward", &attention_weight_backward, py::arg("da"), py::arg("cache"));
  m.def("weight_sum_forward", &weight_sum_forward, py::arg("hs"), py::arg("a"));
  m.def("weight_sum_backward", &weight_sum_backward, py::arg("dc"), py::arg("hs"), py::arg("a"));
}

}  // namespace bindings
