// The dense layer and optimiser bindings: linear_forward/backward (y = act(x w^T + b), ops/dense.h),
// and the training step's whole-model passes over lists of arrays, grad_sum_squares and
// adam_update (ops/optim.h), which check every array of the lists before any is read or written.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "ops/dense.h"
#include "ops/optim.h"

namespace bindings {

namespace {

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
    const auto b = ck.optional_floats<T>(b_in, "b", "O");
    const int64_t N = ck.dim('N'), I = ck.dim('I'), O = ck.dim('O');
    auto y = empty<T>({N, O});
    {
      py::gil_scoped_release nogil;
      s2s::linear_forward<T>(y.mutable_data(), x.data(), w.data(), b.data, N, I, O, act);
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
    // only tanh's derivative reads y; for 'none' it is not checked, and the core gets null
    const auto y = ck.optional_floats<T>(tanh ? y_in : py::handle(Py_None), "y", "N,O");
    const int64_t N = ck.dim('N'), I = ck.dim('I'), O = ck.dim('O');
    Array<T> dx = need_dx ? empty<T>({N, I}) : Array<T>();
    auto dw = empty<T>({O, I});
    auto db = empty<T>({O});
    {
      py::gil_scoped_release nogil;
      s2s::linear_backward<T>(need_dx ? dx.mutable_data() : nullptr, dw.mutable_data(), db.mutable_data(),
                              dy.data(), x.data(), w.data(), y.data, N, I, O, act);
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

template <class T>
T* mptr(const py::array& a) {
  return static_cast<T*>(const_cast<void*>(a.data()));
}

double grad_sum_squares(py::handle grads_in) {
  Checker ck("grad_sum_squares");
  const std::vector<py::array> grads = array_list(ck, grads_in, "grads", false);
  std::vector<bool> f64;  // read here: the dtype is a Python object, not to be touched without the GIL
  for (size_t i = 0; i < grads.size(); ++i) {
    const char kind = grads[i].dtype().kind();
    if (kind != 'f' || (grads[i].itemsize() != 4 && grads[i].itemsize() != 8))
      ck.type_error("grads[" + std::to_string(i) + "] must be float32 or float64, got dtype " +
                    std::string(py::str(grads[i].dtype())));
    f64.push_back(grads[i].itemsize() == 8);
  }
  py::gil_scoped_release nogil;
  double total = 0;
  for (size_t i = 0; i < grads.size(); ++i)
    total += with_dtype(f64[i], [&](auto tag) { return s2s::sum_squares(cptr<decltype(tag)>(grads[i]), grads[i].size()); });
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
  std::vector<bool> f64;  // read here: the dtype is a Python object, not to be touched without the GIL
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
    f64.push_back(params[i].itemsize() == 8);
  }
  const s2s::AdamStep step{scale, beta1, beta2, eps, step_size, inv_sqrt_bias2};
  py::gil_scoped_release nogil;
  for (size_t i = 0; i < params.size(); ++i)
    with_dtype(f64[i], [&](auto tag) {
      using T = decltype(tag);
      s2s::adam_update(mptr<T>(params[i]), mptr<T>(ms[i]), mptr<T>(vs[i]), cptr<T>(grads[i]), params[i].size(), step);
    });
}

}  // namespace

void register_dense(py::module_& m) {
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("activation"));
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("y"),
        py::arg("activation"), py::arg("need_dx"));
}

void register_optim(py::module_& m) {
  m.def("grad_sum_squares", &grad_sum_squares, py::arg("grads"),
        "Sum of squares of every element of a list of float arrays (float64 accumulation).");
  m.def("adam_update", &adam_update, py::arg("params"), py::arg("grads"), py::arg("m"), py::arg("v"),
        py::arg("scale"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("step_size"),
        py::arg("inv_sqrt_bias2"), "Adam's in-place update of lists of arrays (see optim.h).");
}

}  // namespace bindings
