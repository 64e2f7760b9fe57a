// The bindings of the runtime: threads and the pools pylstm shares, the ISA level and its kernel table, the
// profiling counters, and the gate kernels' activations (for their tests).
#include "bindings/args.h"
#include "kernels.h"
#include "parallel.h"
#include "profile.h"

#include <limits>

namespace pylstm::bind {

namespace {

template <class Real>
py::array_t<Real> activation(py::array x_, void (*f)(Real*, const Real*, index_t)) {
  auto x = arg<Real>(x_, "x", {static_cast<index_t>(x_.size())});
  py::array_t<Real> out = new_array<Real>({static_cast<index_t>(x_.size())});
  Real* o = out.mutable_data();
  const index_t n = static_cast<index_t>(x_.size());
  without_gil([=] { f(o, x.ptr, n); });
  return out;
}

py::array activation_dispatch(py::array x, bool sigmoid) {
  if (x.ndim() != 1) throw py::value_error("x must be 1-D, got shape " + shape_of(x));
  return with_real(x, [&](auto real) -> py::array {
    using Real = decltype(real);
    const auto& table = pylstm::kernels().of<Real>();
    return activation<Real>(x, sigmoid ? table.sigmoid : table.tanh);
  });
}

// _core.empty: a new array in the memory the bindings give all their arrays (args.h, new_array).
py::array empty_array(const std::vector<index_t>& shape, const py::object& dtype_) {
  const py::dtype dtype = py::dtype::from_args(dtype_);
  index_t n = 1;
  for (index_t d : shape) {
    if (d < 0) throw py::value_error("shape must not hold negative sizes, got " + std::to_string(d));
    if (d > 0 && n > (std::numeric_limits<index_t>::max() >> 4) / d)
      throw py::value_error("shape is too large: its size overflows");
    n *= d;
  }
  if (dtype.equal(py::dtype::of<float>())) return new_array<float>(shape);
  if (dtype.equal(py::dtype::of<double>())) return new_array<double>(shape);
  throw py::type_error("dtype must be float32 or float64, got " + std::string(py::str(dtype_)));
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("empty", &empty_array, py::arg("shape"), py::arg("dtype"),
        "A new uninitialised C-contiguous float32 or float64 array in 64-byte aligned memory, as the bindings "
        "allocate their outputs and caches.");
  m.def("sigmoid", [](py::array x) { return activation_dispatch(x, true); }, py::arg("x"),
        "The gate kernels' sigmoid over a 1-D C-contiguous array.");
  m.def("tanh", [](py::array x) { return activation_dispatch(x, false); }, py::arg("x"),
        "The gate kernels' tanh over a 1-D C-contiguous array.");
  m.def("get_num_threads", &pylstm::get_num_threads, "Threads the kernels use.");
  m.def("set_num_threads", &pylstm::set_num_threads, py::arg("n"), "Sets the threads the kernels use (n >= 1).");
  m.def("blas_config", &pylstm::blas_config, "The build and core of the OpenBLAS in use.");
  m.def("share_pool_with_openblas", &pylstm::share_pool_with_openblas, py::arg("on"),
        "Other OpenBLAS libraries in the process (NumPy's) run their parallel work on pylstm's pool (on=True) or on "
        "their own threads (on=False); returns the paths of those that now run on the pool.");
  m.def("share_pool_with_openmp", &pylstm::share_pool_with_openmp, py::arg("on"),
        "pylstm's parallel regions run on the team of the OpenMP runtime torch loaded (on=True) or on pylstm's own "
        "threads (on=False); returns the runtime's path, or an empty string.");
  m.def("openmp_team", &pylstm::openmp_team, "The path of the OpenMP runtime whose team runs the pool's regions, "
        "or an empty string.");
  m.def(
      "_profile",
      []() -> py::object {
        if (!pylstm::profiling_build()) return py::none();
        std::uint64_t ns[pylstm::kPhases];
        pylstm::profile_read(ns);
        const char* names[] = {"pack", "projection", "recurrent", "gates", "barrier", "gradient_gemm"};
        static_assert(sizeof(names) / sizeof(names[0]) == pylstm::kPhases, "a name per phase");
        py::dict d;
        for (int p = 0; p < pylstm::kPhases; ++p) d[names[p]] = ns[p] * 1e-9;
        return d;
      },
      "Profiling build only (PYLSTM_PROFILE): seconds of thread-time per phase since the last reset; None otherwise.");
  m.def("_profile_reset", &pylstm::profile_reset, "Profiling build only: sets the phase totals to zero.");
  m.def("_openblas_products_on_pool", &pylstm::openblas_products_on_pool,
        "Tests only: how many multi-threaded products of other OpenBLAS libraries ran on the pool.");
  m.def("_set_fused_loops", &pylstm::set_fused_loops, py::arg("on"),
        "Tests only: True (the default) runs the fused time loops, False the BLAS-per-step reference shape.");
  m.def("_fused_loops", &pylstm::fused_loops, "Whether the fused time loops are on.");
  m.def("_set_row_split", &pylstm::set_row_split_mode, py::arg("mode"),
        "Tests and measurements only: the fused loops' split (the plain LSTM's, the GRU's and the RNN's), -1 the rule "
        "(default), 0 by units, 1 by rows.");
  m.def("_split", &pylstm::fused_split, py::arg("cell"), py::arg("N"), py::arg("H"), py::arg("float64") = false,
        "Which split the fused loops of cell ('lstm', 'gru', 'rnn') take for N rows of H units: 'rows' or 'units'.");
  m.def("_row_split_runs", &pylstm::row_split_runs,
        "Tests only: how many GRU and RNN forward loops have run split by rows in this process.");
  m.def("_row_split", &pylstm::row_split_mode, "The fused loops' split mode (-1 the rule, 0 units, 1 rows).");
  m.def("isa", [] { return std::string(pylstm::kernels().isa); }, "The ISA level of the kernels in use.");
  m.def("isa_lanes", [] { return pylstm::kernels().lanes; }, "float32 lanes of the vectors of the level in use.");
  m.def("isa_available", &pylstm::isa_available, "The ISA levels this CPU runs, best first.");
  m.def("_choose_isa", &pylstm::choose_isa, py::arg("cap"), py::arg("available"),
        "The level PYLSTM_ISA=cap selects on a CPU that runs `available` (for tests of the messages).");
}

}  // namespace pylstm::bind
