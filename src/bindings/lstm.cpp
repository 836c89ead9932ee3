// The LSTM bindings: one cell step (lstm_cell_forward/backward) and a whole sequence with optional
// lengths (lstm_forward/backward), and the caches (LSTMCellCache, LSTMCache) a forward hands its
// backward. Each function checks and converts its arguments (common.h), allocates the outputs and
// calls the core (ops/lstm.h) without the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>

#include "common.h"
#include "ops/lstm.h"

namespace bindings {

namespace {

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

// The arguments both forwards share, checked in one order (x first: it sets the dtype, B and I;
// the weights then H), so their messages name the same sources. None for h0 or c0 means zeros.
template <class T>
struct LSTMInputs {
  Array<T> x, w_hh, w_ih, b, h0, c0;
};

template <class T>
LSTMInputs<T> lstm_inputs(Checker& ck, py::handle x_in, const char* x_spec, py::handle h0_in, py::handle c0_in,
                          py::handle w_ih_in, py::handle w_hh_in, py::handle b_in) {
  LSTMInputs<T> in;
  in.x = ck.floats<T>(x_in, "x", x_spec);
  in.w_hh = ck.floats<T>(w_hh_in, "w_hh", "4H,H");
  in.w_ih = ck.floats<T>(w_ih_in, "w_ih", "4H,I");
  in.b = ck.floats<T>(b_in, "b", "4H");
  in.h0 = ck.floats_or_zeros<T>(h0_in, "h0", "B,H");
  in.c0 = ck.floats_or_zeros<T>(c0_in, "c0", "B,H");
  return in;
}

py::tuple lstm_cell_forward(py::handle x_in, py::handle h0_in, py::handle c0_in, py::handle w_ih_in,
                            py::handle w_hh_in, py::handle b_in) {
  Checker ck("lstm_cell_forward");
  return with_dtype(ck.float_array(x_in, "x"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const LSTMInputs<T> in = lstm_inputs<T>(ck, x_in, "B,I", h0_in, c0_in, w_ih_in, w_hh_in, b_in);
    const int64_t B = ck.dim('B'), I = ck.dim('I'), H = ck.dim('H');
    // The cache keeps its own c1: the caller may write into the c1 it gets back.
    auto h1 = empty<T>({B, H}), c1 = empty<T>({B, H}), c1_saved = empty<T>({B, H}), gates = empty<T>({B, 4 * H});
    {
      py::gil_scoped_release nogil;
      s2s::lstm_cell_forward<T>(h1.mutable_data(), c1.mutable_data(), gates.mutable_data(), in.x.data(),
                                in.h0.data(), in.c0.data(), in.w_ih.data(), in.w_hh.data(), in.b.data(), B, I, H);
      std::memcpy(c1_saved.mutable_data(), c1.data(), sizeof(T) * B * H);
    }
    return py::make_tuple(h1, c1, LSTMCellCache{in.x, in.h0, in.c0, in.w_ih, in.w_hh, gates, c1_saved, B, I, H,
                                                sizeof(T) == 8});
  });
}

py::tuple lstm_cell_backward(py::handle dh1_in, py::handle dc1_in, py::handle cache_in) {
  const char* fn = "lstm_cell_backward";
  Checker ck(fn);
  const auto& cache = require_cache<LSTMCellCache>(cache_in, fn, "LSTMCellCache", "lstm_cell_forward");
  return with_dtype(cache.f64, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const int64_t B = cache.B, I = cache.I, H = cache.H;
    check_cached<T>(fn, "x", cache.x, {B, I});
    check_cached<T>(fn, "h0", cache.h0, {B, H});
    check_cached<T>(fn, "c0", cache.c0, {B, H});
    check_cached<T>(fn, "w_ih", cache.w_ih, {4 * H, I});
    check_cached<T>(fn, "w_hh", cache.w_hh, {4 * H, H});
    check_cached<T>(fn, "gates", cache.gates, {B, 4 * H});
    check_cached<T>(fn, "c1", cache.c1, {B, H});
    ck.bind('B', B, "cache");
    ck.bind('H', H, "cache");
    auto dh1 = ck.floats_or_zeros<T>(dh1_in, "dh1", "B,H");
    auto dc1 = ck.floats_or_zeros<T>(dc1_in, "dc1", "B,H");
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
  return with_dtype(ck.float_array(x_in, "x"), [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const LSTMInputs<T> in = lstm_inputs<T>(ck, x_in, "B,S,I", h0_in, c0_in, w_ih_in, w_hh_in, b_in);
    const int64_t B = ck.dim('B'), S = ck.dim('S'), I = ck.dim('I'), H = ck.dim('H');
    py::object lengths = ck.lengths(lengths_in, 0, "");
    auto hs = empty<T>({B, S, H}), hT = empty<T>({B, H}), cT = empty<T>({B, H});
    auto hx_all = empty<T>({S + 1, B, H + I}), gates = empty<T>({S, B, 4 * H});
    auto c_all = empty<T>({S + 1, B, H});
    const int64_t* len = lengths_ptr(lengths);
    {
      py::gil_scoped_release nogil;
      s2s::lstm_forward<T>(hs.mutable_data(), hT.mutable_data(), cT.mutable_data(), hx_all.mutable_data(),
                           gates.mutable_data(), c_all.mutable_data(), in.x.data(), in.h0.data(), in.c0.data(),
                           in.w_ih.data(), in.w_hh.data(), in.b.data(), len, B, S, I, H);
    }
    return py::make_tuple(hs, hT, cT,
                          LSTMCache{hx_all, in.w_ih, in.w_hh, lengths, gates, c_all, B, S, I, H, sizeof(T) == 8});
  });
}

py::tuple lstm_backward(py::handle dhs_in, py::handle dhT_in, py::handle dcT_in, py::handle cache_in) {
  const char* fn = "lstm_backward";
  Checker ck(fn);
  const auto& cache = require_cache<LSTMCache>(cache_in, fn, "LSTMCache", "lstm_forward");
  return with_dtype(cache.f64, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    const int64_t S = cache.S, B = cache.B, I = cache.I, H = cache.H;
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
    const auto dhs = ck.optional_floats<T>(dhs_in, "dhs", "B,S,H");
    const auto dhT = ck.optional_floats<T>(dhT_in, "dhT", "B,H");
    const auto dcT = ck.optional_floats<T>(dcT_in, "dcT", "B,H");
    auto dx = empty<T>({B, S, I}), dh0 = empty<T>({B, H}), dc0 = empty<T>({B, H});
    auto dw_ih = empty<T>({4 * H, I}), dw_hh = empty<T>({4 * H, H}), db = empty<T>({4 * H});
    const int64_t* len = lengths_ptr(cache.lengths);
    {
      py::gil_scoped_release nogil;
      s2s::lstm_backward<T>(dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), dw_ih.mutable_data(),
                            dw_hh.mutable_data(), db.mutable_data(), dhs.data, dhT.data, dcT.data,
                            cptr<T>(cache.hx_all), cptr<T>(cache.gates), cptr<T>(cache.c_all),
                            cptr<T>(cache.w_ih), cptr<T>(cache.w_hh), len, B, S, I, H);
    }
    return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db);
  });
}

}  // namespace

void register_lstm(py::module_& m) {
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
  m.def("lstm_cell_forward", &lstm_cell_forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("b"));
  m.def("lstm_cell_backward", &lstm_cell_backward, py::arg("dh1"), py::arg("dc1"), py::arg("cache"));
  m.def("lstm_forward", &lstm_forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b"), py::arg("lengths"));
  m.def("lstm_backward", &lstm_backward, py::arg("dhs"), py::arg("dhT"), py::arg("dcT"), py::arg("cache"));
}

}  // namespace bindings
