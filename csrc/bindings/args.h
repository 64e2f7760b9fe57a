// What every binding shares: checks of NumPy arguments against the sizes a kernel needs, outputs, the per-thread
// workspace, and the rule for releasing the GIL (without_gil). Header-only (inline), included by each binding file.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // in every binding file: the same casters everywhere

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "common.h"
#include "memory.h"

namespace pylstm::bind {

namespace py = pybind11;

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s += (k ? ", " : "") + std::to_string(a.shape(k));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// A checked array argument: its data pointer and, for a sequence, the stride in elements between rows.
template <class Real>
struct Arg {
  Real* ptr = nullptr;
  index_t ld = 0;
  const char* name = "";
  const char* lo = nullptr;  // the byte range the array's elements span, for overlap checks
  const char* hi = nullptr;
};

// Refuses an output that shares memory with any other argument (the kernels' restrict loops and BLAS assume none).
template <class Real>
void no_overlap(std::initializer_list<const Arg<Real>*> outs, std::initializer_list<const Arg<Real>*> all) {
  for (const Arg<Real>* out : outs)
    for (const Arg<Real>* o : all)
      if (o != out && out->ptr && o->ptr && out->lo < o->hi && o->lo < out->hi)
        throw py::value_error(std::string(out->name) + " must not share memory with " + o->name);
}

// Checks that `obj` is an ndarray of dtype Real and shape `shape`. Dense C order is required, except that with
// `rows` a [T][N][H] array may have padded rows (each row dense, rows evenly spaced): a column slice of a wider
// sequence, as one direction of a bidirectional output is. None is accepted when `optional`.
template <class Real>
Arg<Real> arg(py::handle obj, const char* name, const std::vector<index_t>& shape, bool writable = false,
              bool optional = false, bool rows = false) {
  Arg<Real> r;
  r.name = name;
  if (obj.is_none()) {
    if (optional) return r;
    throw py::type_error(std::string(name) + " must be an array, got None");
  }
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<Real>>(a))  // equivalent native dtype, not object identity
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<Real>())) +
                         ", got " + std::string(py::str(a.dtype())));
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t k = 0; ok && k < shape.size(); ++k) ok = a.shape(k) == shape[k];
  if (!ok) {
    std::string want = "(";
    for (size_t k = 0; k < shape.size(); ++k) want += (k ? ", " : "") + std::to_string(shape[k]);
    throw py::value_error(std::string(name) + " must have shape " + want + (shape.size() == 1 ? ",)" : ")") +
                          ", got " + shape_of(a));
  }
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " must be aligned to its dtype");
  const index_t item = sizeof(Real);
  r.ld = shape.back();
  if (rows && shape.size() == 3 && !(a.flags() & py::array::c_style)) {
    // The T*N rows must be evenly spaced; the stride of an axis of length 1 is irrelevant.
    const index_t T = shape[0], N = shape[1], H = shape[2];
    const index_t row = N > 1 ? a.strides(1) : T > 1 ? a.strides(0) : H * item;
    if ((H > 1 && a.strides(2) != item) || row % item || row / item < H || (T > 1 && N > 1 && a.strides(0) != N * row))
      throw py::value_error(std::string(name) + " must be C-contiguous or a column slice of a C-contiguous array");
    r.ld = row / item;
  } else if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous");
  }
  r.ptr = static_cast<Real*>(const_cast<void*>(a.data()));
  // Strides here are non-negative (dense or evenly padded rows), so the span runs from data to the last element.
  index_t last = 0;
  for (py::ssize_t k = 0; k < a.ndim(); ++k) last += (a.shape(k) - 1) * a.strides(k);
  r.lo = static_cast<const char*>(a.data());
  r.hi = r.lo + last + item;
  return r;
}

// A call's scratch. Each OS thread keeps one buffer of each kind of pages (memory.h), grown as needed and reused by
// its next call (a binding needs one workspace at a time), so that repeated calls do not map fresh pages and fault
// them in: at the large benchmark case a new 38 MB workspace per call cost about 5 % of the call in page clearing.
// Above kKeptWorkspaceBytes the buffer is the call's own and is freed with it.
inline constexpr size_t kKeptWorkspaceBytes = size_t(256) << 20;

template <class Real>
class Workspace {
 public:
  explicit Workspace(index_t n, pylstm::Pages pages = pylstm::Pages::Huge) {
    const size_t bytes = static_cast<size_t>(n > 0 ? n : 1) * sizeof(Real);
    if (bytes > kKeptWorkspaceBytes) {
      own_ = pylstm::make_large<Real>(bytes / sizeof(Real), pages);
      ptr_ = own_.get();
      return;
    }
    thread_local pylstm::LargeBuffer<double> kept[2];  // double: aligned for both element types
    thread_local size_t kept_bytes[2] = {0, 0};
    const int k = pages == pylstm::Pages::Huge ? 0 : 1;
    if (kept_bytes[k] < bytes) {
      kept[k].reset();  // release the old buffer before taking the larger one
      kept[k] = pylstm::make_large<double>((bytes + sizeof(double) - 1) / sizeof(double), pages);
      kept_bytes[k] = bytes;
    }
    ptr_ = reinterpret_cast<Real*>(kept[k].get());
  }
  Real* get() const { return ptr_; }

 private:
  pylstm::LargeBuffer<Real> own_;
  Real* ptr_ = nullptr;
};

template <class Real>
Workspace<Real> workspace(index_t n, pylstm::Pages pages = pylstm::Pages::Huge) {
  return Workspace<Real>(n, pages);
}

// A new C-contiguous array of `shape`, uninitialised, in 64-byte aligned memory (memory.h, alloc_array) that the
// array owns. Every array the bindings create comes from here.
template <class T>
py::array_t<T> new_array(const std::vector<index_t>& shape) {
  std::size_t n = 1;
  for (index_t d : shape) n *= static_cast<std::size_t>(d);
  void* p = pylstm::alloc_array(n * sizeof(T));
  py::capsule owner;
  try {
    owner = py::capsule(p, [](void* q) { pylstm::free_array(q); });
  } catch (...) {
    pylstm::free_array(p);
    throw;
  }
  return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()), static_cast<T*>(p), owner);
}

template <class Real>
py::array_t<Real> zeros(const std::vector<index_t>& shape) {
  py::array_t<Real> a = new_array<Real>(shape);
  std::fill(a.mutable_data(), a.mutable_data() + a.size(), Real(0));
  return a;
}

// An optional pair (the two biases, or their gradients) must be given whole.
template <class Real>
void both_or_neither(const Arg<Real>& a, const Arg<Real>& b) {
  if (!a.ptr != !b.ptr)
    throw py::value_error(std::string(a.name) + " and " + b.name + " must both be given or both be None");
}

// Recurrent dropout's arrays (common.h, RecurrentDropout): rd_mask (N, P) and rd_masked (T + 1, N, P), writable, both
// or neither, for training calls only.
template <class Real>
std::pair<Arg<Real>, Arg<Real>> recurrent_dropout_args(py::handle mask_, py::handle masked_, index_t T, index_t N,
                                                       index_t P, bool training) {
  auto mask = arg<Real>(mask_, "rd_mask", {N, P}, false, true);
  auto masked = arg<Real>(masked_, "rd_masked", {T + 1, N, P}, true, true);
  both_or_neither(mask, masked);
  if (mask.ptr && !training) throw py::value_error("rd_mask (recurrent dropout) is for training calls");
  return {mask, masked};
}

// Zoneout's arguments (common.h, Zoneout): zone_keep_c, zone_keep_h (T, N, H) masks of a training call (the GRU and
// the RNN have no c: states 1), or the expectations zone_c, zone_h in [0, 1) of an inference call.
template <class Real>
struct ZoneoutArgs {
  pylstm::Zoneout<Real> zone;
  Arg<Real> keep_c, keep_h;  // for the overlap checks
};
template <class Real>
ZoneoutArgs<Real> zoneout_args(py::handle keep_c_, py::handle keep_h_, double z_c, double z_h, index_t T, index_t N,
                               index_t H, int states) {
  auto keep_c = arg<Real>(keep_c_, "zone_keep_c", {T, N, H}, false, true);
  auto keep_h = arg<Real>(keep_h_, "zone_keep_h", {T, N, H}, false, true);
  if (!(z_c >= 0 && z_c < 1) || !(z_h >= 0 && z_h < 1))
    throw py::value_error("zone_c and zone_h must be in [0, 1), got " + std::to_string(z_c) + " and " +
                          std::to_string(z_h));
  if (states == 1 && (keep_c.ptr || z_c != 0)) throw py::value_error("zone_keep_c and zone_c need a cell state");
  if (states == 2 && !keep_c.ptr != !keep_h.ptr)
    throw py::value_error("zone_keep_c and zone_keep_h must both be given or both be None");
  if (keep_h.ptr && (z_c != 0 || z_h != 0))
    throw py::value_error("zoneout takes masks (training) or expectations (inference), not both");
  return {{keep_c.ptr, keep_h.ptr, Real(z_c), Real(z_h)}, keep_c, keep_h};
}

// The caller's output array when given (checked later by arg()), else a new one: uninitialised, or zeros for an
// output the kernel accumulates into.
template <class Real>
py::object out_or_new(py::object given, const std::vector<index_t>& shape, bool zeroed) {
  if (!given.is_none()) return given;
  if (zeroed) return zeros<Real>(shape);
  return new_array<Real>(shape);
}

// A training forward's cache (size elements), or None for inference: the caller's array `given` (a consumed cache of
// an earlier call, say: reusing it spares the pages of a fresh allocation, which the OS clears on first touch), or
// a new one. `out` describes it for the overlap checks.
template <class Real>
py::object new_cache(bool training, index_t size, Arg<Real>& out, const py::object& given) {
  out = Arg<Real>{};
  if (!training) {
    if (!given.is_none()) throw py::value_error("cache must be None in inference (training=False)");
    return py::none();
  }
  if (!given.is_none()) {
    out = arg<Real>(given, "cache", {size}, true);
    return given;
  }
  py::array_t<Real> c = new_array<Real>({size});
  out = arg<Real>(c, "cache", {size}, true);
  return c;
}

// Refuses, before anything is allocated, sizes whose caches and workspaces 64-bit index arithmetic cannot express
// (possible with broadcast arrays, which occupy no memory) and calls that need more memory than the machine has:
// with overcommit the OS would grant such an allocation and kill the process when the kernel first touches it.
// GH is the rows of W_hh (G·H), H its columns; the estimate is what a training forward allocates: y, and the cache
// of at most T·N·(G·H + 2·H) values.
inline void check_footprint(index_t T, index_t N, index_t I, index_t GH, index_t H, py::ssize_t item) {
  constexpr index_t limit = index_t(1) << 58;  // elements; leaves the size functions' small factors room
  index_t rows, per_row, total, weights;
  const bool overflow = __builtin_mul_overflow(T, N, &rows) || __builtin_add_overflow(I, 4 * GH, &per_row) ||
                        __builtin_mul_overflow(rows, per_row, &total) || total > limit ||
                        __builtin_mul_overflow(GH, H + 32, &weights) || weights > limit;
  if (overflow)
    throw py::value_error("sizes T=" + std::to_string(T) + ", N=" + std::to_string(N) + ", I=" + std::to_string(I) +
                          ", G*H=" + std::to_string(GH) + " overflow 64-bit index arithmetic");
  static const double physical = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  const double bytes = (double(rows) * double(3 * GH) + double(weights)) * double(item);
  if (physical > 0 && bytes > physical) {
    PyErr_SetString(PyExc_MemoryError, ("pylstm: T=" + std::to_string(T) + ", N=" + std::to_string(N) + ", G*H=" +
                                        std::to_string(GH) + " needs about " + std::to_string(bytes / 1e9) +
                                        " GB, more than this machine's " + std::to_string(physical / 1e9) + " GB")
                                           .c_str());
    throw py::error_already_set();
  }
}

struct Sizes {
  index_t T, N, I, H;
};

// Reads T, N, I from x [T][N][I] and H from W_hh [G*H][H]; arg() then checks every array against them.
inline Sizes sizes(const py::array& x, const py::array& W_hh) {
  if (x.ndim() != 3) throw py::value_error("x must be 3-D (T, N, I), got shape " + shape_of(x));
  if (W_hh.ndim() != 2) throw py::value_error("W_hh must be 2-D (G*H, H), got shape " + shape_of(W_hh));
  Sizes s{x.shape(0), x.shape(1), x.shape(2), W_hh.shape(1)};
  if (s.T < 1 || s.N < 1 || s.I < 1 || s.H < 1)
    throw py::value_error("x and W_hh must have no zero-sized axis, got x " + shape_of(x) + ", W_hh " +
                          shape_of(W_hh));
  check_footprint(s.T, s.N, s.I, W_hh.shape(0), s.H, x.itemsize());
  return s;
}

// Calls f(Real{}) with Real the float type of `a`; anything else is a TypeError naming it.
template <class F>
auto with_real(const py::array& a, F&& f, const char* name = "x") {
  if (py::isinstance<py::array_t<float>>(a)) return f(float{});
  if (py::isinstance<py::array_t<double>>(a)) return f(double{});
  throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " + std::string(py::str(a.dtype())));
}

// Runs a kernel with the GIL released. The binding checks its arguments, allocates its outputs and converts
// everything it needs while it holds the GIL, then hands the kernel call over as a lambda that captures plain values
// only, by value ([=]: pointers, sizes, flags). A lambda that captured a Python object by value would not be
// trivially copyable and fails to compile here; a Python call made inside anyway aborts the sanitize build, which
// asserts the GIL at every reference-count change (CMakeLists.txt).
template <class Kernel>
auto without_gil(const Kernel& kernel) {
  static_assert(std::is_trivially_copyable_v<Kernel>, "capture plain values only: no Python objects");
  py::gil_scoped_release nogil;
  return kernel();
}

// Variable lengths in PyTorch's packed form: [T] int64, the rows running at each step of a batch sorted longest
// first. None gives nullptr (every row runs every step).
inline const index_t* batch_sizes_arg(py::handle obj, index_t T, index_t N) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array_t<std::int64_t>>(obj))
    throw py::type_error("batch_sizes must be a numpy.ndarray of int64");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != 1 || a.shape(0) != T || !(a.flags() & py::array::c_style))
    throw py::value_error("batch_sizes must be a C-contiguous array of shape (" + std::to_string(T) + ",), got " +
                          shape_of(a));
  const auto* bs = static_cast<const std::int64_t*>(a.data());
  if (T > 0 && bs[0] != N)
    throw py::value_error("batch_sizes[0] must be N = " + std::to_string(N) + " (every sequence runs its first step)");
  for (index_t t = 0; t < T; ++t)
    if (bs[t] < 0 || bs[t] > N || (t > 0 && bs[t] > bs[t - 1]))
      throw py::value_error("batch_sizes must be non-increasing and within [0, N]");
  static_assert(sizeof(index_t) == sizeof(std::int64_t), "batch_sizes is passed through as index_t");
  return reinterpret_cast<const index_t*>(bs);
}


}  // namespace pylstm::bind
