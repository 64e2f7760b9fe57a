// pylstm._core: one module, its bindings defined per family (csrc/bindings/*.cpp). Each binding checks its NumPy
// arguments against the sizes the kernel needs and allocates what it returns while it holds the GIL, then runs the
// C++ core on plain values without it (bindings/args.h, without_gil).
#include "bindings/args.h"
#include "kernels.h"

namespace pylstm::bind {
void bind_lstm(py::module_& m);
void bind_single(py::module_& m);
void bind_train(py::module_& m);
void bind_runtime(py::module_& m);
void bind_int8(py::module_& m);
}  // namespace pylstm::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "pylstm compiled kernels (private; use the pylstm package). Mirrors pylstm.reference name for name.";
  // Choose the kernel table now, so that an invalid PYLSTM_ISA fails the import (pybind11 raises ImportError with
  // the message) instead of a later call.
  pylstm::kernels();
  pylstm::bind::bind_lstm(m);
  pylstm::bind::bind_single(m);
  pylstm::bind::bind_runtime(m);
  pylstm::bind::bind_train(m);
  pylstm::bind::bind_int8(m);
}
