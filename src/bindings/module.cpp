// s2sext._core: the one layer between Python and the C++ core. This file only registers; each
// family's bindings live in their own file (lstm, attention, dense_optim, engine, machine) and
// share common.h's checks: each function validates its arguments (messages name the argument, the
// expected and the actual value), converts arrays to C-contiguous float32/float64 (a copy only when
// needed), allocates the outputs, then releases the GIL around the kernel. No math lives here.
#include <pybind11/pybind11.h>

#include "common.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "s2sext's compiled core. Use s2sext.ops; this module's names are private.";
  bindings::register_lstm(m);
  bindings::register_attention(m);
  bindings::register_dense(m);
  bindings::register_engine(m);
  bindings::register_optim(m);
  bindings::register_machine(m);
  bindings::register_spec(m);
}
