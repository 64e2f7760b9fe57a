// pylstm._core: checks NumPy arguments, allocates outputs and workspace, releases the GIL and calls the C++ core.
#include <pybind11/numpy.h>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "gru.h"
#include "kernels.h"
#include "lstm.h"
#include "memory.h"
#include "parallel.h"
#include "profile.h"
#include "rnn.h"
#include "train.h"

namespace py = pybind11;
using pylstm::index_t;

namespace {

std::string shape_of(const py::array& a) {
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

// A call's scratch. Each OS thread keeps one buffer, grown as needed and reused by its next call (a binding needs
// one workspace at a time), so that repeated calls do not map fresh pages and fault them in: at the large benchmark
// case a new 38 MB workspace per call cost about 5 % of the call in page clearing. Above kKeptWorkspaceBytes the
// buffer is the call's own and is freed with it.
constexpr size_t kKeptWorkspaceBytes = size_t(256) << 20;

template <class Real>
class Workspace {
 public:
  explicit Workspace(index_t n) {
    const size_t bytes = static_cast<size_t>(n > 0 ? n : 1) * sizeof(Real);
    if (bytes > kKeptWorkspaceBytes) {
      own_ = pylstm::make_large<Real>(bytes / sizeof(Real));
      ptr_ = own_.get();
      return;
    }
    thread_local pylstm::LargeBuffer<double> kept;  // double: aligned for both element types
    thread_local size_t kept_bytes = 0;
    if (kept_bytes < bytes) {
      kept.reset();  // release the old buffer before taking the larger one
      kept = pylstm::make_large<double>((bytes + sizeof(double) - 1) / sizeof(double));
      kept_bytes = bytes;
    }
    ptr_ = reinterpret_cast<Real*>(kept.get());
  }
  Real* get() const { return ptr_; }

 private:
  pylstm::LargeBuffer<Real> own_;
  Real* ptr_ = nullptr;
};

template <class Real>
Workspace<Real> workspace(index_t n) {
  return Workspace<Real>(n);
}

template <class Real>
py::array_t<Real> zeros(const std::vector<index_t>& shape) {
  py::array_t<Real> a(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  std::fill(a.mutable_data(), a.mutable_data() + a.size(), Real(0));
  return a;
}

// An optional pair (the two biases, or their gradients) must be given whole.
template <class Real>
void both_or_neither(const Arg<Real>& a, const Arg<Real>& b) {
  if (!a.ptr != !b.ptr)
    throw py::value_error(std::string(a.name) + " and " + b.name + " must both be given or both be None");
}

// The caller's output array when given (checked later by arg()), else a new one: uninitialised, or zeros for an
// output the kernel accumulates into.
template <class Real>
py::object out_or_new(py::object given, const std::vector<index_t>& shape, bool zeroed) {
  if (!given.is_none()) return given;
  if (zeroed) return zeros<Real>(shape);
  return py::array_t<Real>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

// A training forward's cache (size elements, returned with its data pointer in `ptr`), or None for inference.
template <class Real>
py::object new_cache(bool training, index_t size, Real*& ptr) {
  ptr = nullptr;
  if (!training) return py::none();
  py::array_t<Real> c(size);
  ptr = c.mutable_data();
  return c;
}

// Refuses, before anything is allocated, sizes whose caches and workspaces 64-bit index arithmetic cannot express
// (possible with broadcast arrays, which occupy no memory) and calls that need more memory than the machine has:
// with overcommit the OS would grant such an allocation and kill the process when the kernel first touches it.
// GH is the rows of W_hh (G·H), H its columns; the estimate is what a training forward allocates: y, and the cache
// of at most T·N·(G·H + 2·H) values.
void check_footprint(index_t T, index_t N, index_t I, index_t GH, index_t H, py::ssize_t item) {
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
Sizes sizes(const py::array& x, const py::array& W_hh) {
  if (x.ndim() != 3) throw py::value_error("x must be 3-D (T, N, I), got shape " + shape_of(x));
  if (W_hh.ndim() != 2) throw py::value_error("W_hh must be 2-D (G*H, H), got shape " + shape_of(W_hh));
  Sizes s{x.shape(0), x.shape(1), x.shape(2), W_hh.shape(1)};
  if (s.T < 1 || s.N < 1 || s.I < 1 || s.H < 1)
    throw py::value_error("x and W_hh must have no zero-sized axis, got x " + shape_of(x) + ", W_hh " +
                          shape_of(W_hh));
  check_footprint(s.T, s.N, s.I, W_hh.shape(0), s.H, x.itemsize());
  return s;
}

// Calls f(Real{}) with Real the float type of x; anything else is a TypeError naming x.
template <class F>
py::tuple with_real(const py::array& x, F&& f) {
  if (py::isinstance<py::array_t<float>>(x)) return f(float{});
  if (py::isinstance<py::array_t<double>>(x)) return f(double{});
  throw py::type_error("x must have dtype float32 or float64, got " + std::string(py::str(x.dtype())));
}

using pylstm::Pass;

// The LSTM's sizes: H from W_hh [4H][P] and P (the width of h: proj_size, or H) from W_hr [P][H] when given.
struct LstmSizes {
  index_t T, N, I, H, P;
};
LstmSizes lstm_sizes(const py::array& x, const py::array& W_hh, const py::object& W_hr) {
  const Sizes s = sizes(x, W_hh);
  if (W_hh.shape(0) % pylstm::kLstmGates)
    throw py::value_error("W_hh must have 4*H rows, got shape " + shape_of(W_hh));
  const index_t H = W_hh.shape(0) / pylstm::kLstmGates, P = W_hh.shape(1);
  if (W_hr.is_none() && P != H)
    throw py::value_error("W_hh must have shape (4*H, H) without a projection, got " + shape_of(W_hh));
  if (!W_hr.is_none() && P >= H)
    throw py::value_error("W_hr (P, H) needs P < H: W_hh has shape " + shape_of(W_hh));
  return {s.T, s.N, s.I, H, P};
}

// Variable lengths in PyTorch's packed form: [T] int64, the rows running at each step of a batch sorted longest
// first. None gives nullptr (every row runs every step).
const index_t* batch_sizes_arg(py::handle obj, index_t T, index_t N) {
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

// A float32 LSTM layer direction's packed weights, kept by the Python layer between calls (see LstmPacked).
struct PackedLstm {
  index_t I, H;
  pylstm::LargeBuffer<float> data;
  bool ready = false;
  PackedLstm(index_t I_, index_t H_)
      : I(I_), H(H_), data(pylstm::make_large<float>(pylstm::lstm_packed_size(I_, H_))) {}
};

PackedLstm& packed_for(py::handle obj, index_t I, index_t H) {
  if (!py::isinstance<PackedLstm>(obj))
    throw py::type_error("packed must be a PackedLstm, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  auto& pk = obj.cast<PackedLstm&>();
  if (pk.I != I || pk.H != H)
    throw py::value_error("packed was made for (I, H) = (" + std::to_string(pk.I) + ", " + std::to_string(pk.H) +
                          "), this call has (" + std::to_string(I) + ", " + std::to_string(H) + ")");
  return pk;
}

template <class Real>
py::tuple lstm_forward_t(py::array x_, py::object h0_, py::object c0_, py::array W_ih_, py::array W_hh_,
                         py::object b_ih_, py::object b_hh_, py::object W_hr_, bool reverse, bool training,
                         py::object y_, py::object packed_, py::object batch_sizes_, py::object P_) {
  const auto [T, N, I, H, P] = lstm_sizes(x_, W_hh_, W_hr_);
  const index_t GH = pylstm::kLstmGates * H;
  auto x = arg<Real>(x_, "x", {T, N, I});
  auto peep = arg<Real>(P_, "P", {3 * H}, false, true);
  if (peep.ptr && !W_hr_.is_none()) throw py::value_error("P (peepholes) and W_hr (a projection) cannot be combined");
  auto h0 = arg<Real>(h0_, "h0", {N, P}, false, true);
  auto c0 = arg<Real>(c0_, "c0", {N, H}, false, true);
  auto W_ih = arg<Real>(W_ih_, "W_ih", {GH, I});
  auto W_hh = arg<Real>(W_hh_, "W_hh", {GH, P});
  auto b_ih = arg<Real>(b_ih_, "b_ih", {GH}, false, true);
  auto b_hh = arg<Real>(b_hh_, "b_hh", {GH}, false, true);
  auto W_hr = arg<Real>(W_hr_, "W_hr", {P, H}, false, true);
  both_or_neither(b_ih, b_hh);

  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  // With variable lengths the kernel leaves y past each row's end alone: a new y starts as zeros.
  py::object y_obj = out_or_new<Real>(y_, {T, N, P}, batch_sizes != nullptr);
  auto y = arg<Real>(y_obj, "y", {T, N, P}, true, false, true);
  no_overlap<Real>({&y}, {&x, &h0, &c0, &W_ih, &W_hh, &b_ih, &b_hh, &W_hr, &peep});
  py::array_t<Real> h_n({N, P}), c_n({N, H});
  Real* cache;
  py::object cache_obj = new_cache(training, pylstm::lstm_cache_size(T, N, H), cache);
  auto work = workspace<Real>(pylstm::lstm_workspace_size(training ? Pass::TrainingForward : Pass::Inference, T, N, I, H, P));
  PackedLstm* pk = nullptr;
  pylstm::LstmPacked keep{nullptr, false};
  if (!packed_.is_none()) {
    pk = &packed_for(packed_, I, H);
    if constexpr (std::is_same_v<Real, float>) keep = {pk->data.get(), pk->ready};
    pk->ready = false;  // until the call has succeeded
  }
  {
    py::gil_scoped_release nogil;
    pylstm::lstm_forward<Real>(y.ptr, y.ld, h_n.mutable_data(), c_n.mutable_data(), cache, work.get(), x.ptr, h0.ptr,
                               c0.ptr, W_ih.ptr, W_hh.ptr, b_ih.ptr, b_hh.ptr, W_hr.ptr, T, N, I, H, P, reverse,
                               keep.data ? &keep : nullptr, batch_sizes, peep.ptr);
  }
  if (pk) pk->ready = keep.ready;
  return py::make_tuple(y_obj, h_n, c_n, cache_obj);
}

template <class Real>
py::tuple lstm_backward_t(py::object dy_, py::object dh_n_, py::object dc_n_, py::array x_, py::object h0_,
                          py::object c0_, py::array W_ih_, py::array W_hh_, py::object y_, py::object cache_,
                          py::object dW_ih_, py::object dW_hh_, py::object db_ih_, py::object db_hh_,
                          py::object W_hr_, py::object dW_hr_, bool reverse, py::object dx_, bool input_grad,
                          py::object batch_sizes_, py::object P_, py::object dP_) {
  const auto [T, N, I, H, P] = lstm_sizes(x_, W_hh_, W_hr_);
  const index_t GH = pylstm::kLstmGates * H;
  auto dy = arg<Real>(dy_, "dy", {T, N, P}, false, true, true);
  auto dh_n = arg<Real>(dh_n_, "dh_n", {N, P}, false, true);
  auto dc_n = arg<Real>(dc_n_, "dc_n", {N, H}, false, true);
  auto x = arg<Real>(x_, "x", {T, N, I});
  auto h0 = arg<Real>(h0_, "h0", {N, P}, false, true);
  auto c0 = arg<Real>(c0_, "c0", {N, H}, false, true);
  auto W_ih = arg<Real>(W_ih_, "W_ih", {GH, I});
  auto W_hh = arg<Real>(W_hh_, "W_hh", {GH, P});
  auto W_hr = arg<Real>(W_hr_, "W_hr", {P, H}, false, true);
  auto y = arg<Real>(y_, "y", {T, N, P}, false, false, true);
  auto cache = arg<Real>(cache_, "cache", {pylstm::lstm_cache_size(T, N, H)}, true);
  auto dW_ih = arg<Real>(dW_ih_, "dW_ih", {GH, I}, true);
  auto dW_hh = arg<Real>(dW_hh_, "dW_hh", {GH, P}, true);
  auto db_ih = arg<Real>(db_ih_, "db_ih", {GH}, true, true);
  auto db_hh = arg<Real>(db_hh_, "db_hh", {GH}, true, true);
  auto dW_hr = arg<Real>(dW_hr_, "dW_hr", {P, H}, true, true);
  both_or_neither(db_ih, db_hh);
  both_or_neither(W_hr, dW_hr);
  auto peep = arg<Real>(P_, "P", {3 * H}, false, true);
  auto dpeep = arg<Real>(dP_, "dP", {3 * H}, true, true);
  both_or_neither(peep, dpeep);
  if (peep.ptr && W_hr.ptr) throw py::value_error("P (peepholes) and W_hr (a projection) cannot be combined");

  // Without input_grad, ∂L/∂x is not computed (as torch skips it for an input that does not require a gradient).
  if (!input_grad && !dx_.is_none()) throw py::value_error("dx must be None when input_grad is False");
  py::object dx_obj = input_grad ? out_or_new<Real>(dx_, {T, N, I}, true) : py::none();
  auto dx = input_grad ? arg<Real>(dx_obj, "dx", {T, N, I}, true) : Arg<Real>{};
  no_overlap<Real>({&dx, &cache, &dW_ih, &dW_hh, &db_ih, &db_hh, &dW_hr, &dpeep},
                   {&dx, &dy, &dh_n, &dc_n, &x, &h0, &c0, &W_ih, &W_hh, &W_hr, &y, &cache, &dW_ih, &dW_hh, &db_ih,
                    &db_hh, &dW_hr, &peep, &dpeep});
  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  py::array_t<Real> dh0({N, P}), dc0({N, H});
  auto work = workspace<Real>(pylstm::lstm_workspace_size(Pass::Backward, T, N, I, H, P));
  {
    py::gil_scoped_release nogil;
    pylstm::lstm_backward<Real>(dx.ptr, dh0.mutable_data(), dc0.mutable_data(), dW_ih.ptr, dW_hh.ptr, db_ih.ptr,
                                db_hh.ptr, dW_hr.ptr, cache.ptr, work.get(), dy.ptr, dy.ld, dh_n.ptr, dc_n.ptr, x.ptr,
                                y.ptr, y.ld, h0.ptr, c0.ptr, W_ih.ptr, W_hh.ptr, W_hr.ptr, T, N, I, H, P, reverse,
                                batch_sizes, peep.ptr, dpeep.ptr);
  }
  return py::make_tuple(dx_obj, dh0, dc0);
}

// The cells with one state (GRU, RNN) share their bindings; `variant` is linear_before_reset or the nonlinearity.
struct Gru {
  static constexpr index_t G = pylstm::kGruGates;
  static index_t cache_size(index_t T, index_t N, index_t H) { return pylstm::gru_cache_size(T, N, H); }
  static index_t workspace_size(Pass p, index_t T, index_t N, index_t I, index_t H) {
    return pylstm::gru_workspace_size(p, T, N, I, H);
  }
  template <class Real, class... A>
  static void forward(int variant, bool reverse, const index_t* bs, A... a) {
    pylstm::gru_forward<Real>(a..., variant != 0, reverse, bs);
  }
  template <class Real, class... A>
  static void backward(int variant, bool reverse, const index_t* bs, A... a) {
    pylstm::gru_backward<Real>(a..., variant != 0, reverse, bs);
  }
};

struct Rnn {
  static constexpr index_t G = 1;
  static index_t cache_size(index_t T, index_t N, index_t H) { return pylstm::rnn_cache_size(T, N, H); }
  static index_t workspace_size(Pass p, index_t T, index_t N, index_t I, index_t H) {
    return pylstm::rnn_workspace_size(p, T, N, I, H);
  }
  template <class Real, class... A>
  static void forward(int variant, bool reverse, const index_t* bs, A... a) {
    pylstm::rnn_forward<Real>(a..., static_cast<pylstm::Nonlinearity>(variant), reverse, bs);
  }
  template <class Real, class... A>
  static void backward(int variant, bool reverse, const index_t* bs, A... a) {
    pylstm::rnn_backward<Real>(a..., static_cast<pylstm::Nonlinearity>(variant), reverse, bs);
  }
};

int nonlinearity(const std::string& s) {
  if (s == "tanh") return static_cast<int>(pylstm::Nonlinearity::Tanh);
  if (s == "relu") return static_cast<int>(pylstm::Nonlinearity::Relu);
  throw py::value_error("nonlinearity must be 'tanh' or 'relu', got '" + s + "'");
}

template <class Cell, class Real>
py::tuple single_forward_t(py::array x_, py::object h0_, py::array W_ih_, py::array W_hh_, py::object b_ih_,
                           py::object b_hh_, int variant, bool reverse, bool training, py::object y_,
                           py::object batch_sizes_) {
  const auto [T, N, I, H] = sizes(x_, W_hh_);
  const index_t GH = Cell::G * H;
  auto x = arg<Real>(x_, "x", {T, N, I});
  auto h0 = arg<Real>(h0_, "h0", {N, H}, false, true);
  auto W_ih = arg<Real>(W_ih_, "W_ih", {GH, I});
  auto W_hh = arg<Real>(W_hh_, "W_hh", {GH, H});
  auto b_ih = arg<Real>(b_ih_, "b_ih", {GH}, false, true);
  auto b_hh = arg<Real>(b_hh_, "b_hh", {GH}, false, true);
  both_or_neither(b_ih, b_hh);
  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  py::object y_obj = out_or_new<Real>(y_, {T, N, H}, batch_sizes != nullptr);  // zeros past each row's end
  auto y = arg<Real>(y_obj, "y", {T, N, H}, true, false, true);
  no_overlap<Real>({&y}, {&x, &h0, &W_ih, &W_hh, &b_ih, &b_hh});
  py::array_t<Real> h_n({N, H});
  Real* cache;
  py::object cache_obj = new_cache(training, Cell::cache_size(T, N, H), cache);
  auto work = workspace<Real>(Cell::workspace_size(training ? Pass::TrainingForward : Pass::Inference, T, N, I, H));
  {
    py::gil_scoped_release nogil;
    Cell::template forward<Real>(variant, reverse, batch_sizes, y.ptr, y.ld, h_n.mutable_data(), cache, work.get(),
                                 x.ptr, h0.ptr, W_ih.ptr, W_hh.ptr, b_ih.ptr, b_hh.ptr, T, N, I, H);
  }
  return py::make_tuple(y_obj, h_n, cache_obj);
}

template <class Cell, class Real>
py::tuple single_backward_t(py::object dy_, py::object dh_n_, py::array x_, py::object h0_, py::array W_ih_,
                            py::array W_hh_, py::object y_, py::object cache_, py::object dW_ih_, py::object dW_hh_,
                            py::object db_ih_, py::object db_hh_, int variant, bool reverse, py::object dx_,
                            bool input_grad, py::object batch_sizes_) {
  const auto [T, N, I, H] = sizes(x_, W_hh_);
  const index_t GH = Cell::G * H;
  auto dy = arg<Real>(dy_, "dy", {T, N, H}, false, true, true);
  auto dh_n = arg<Real>(dh_n_, "dh_n", {N, H}, false, true);
  auto x = arg<Real>(x_, "x", {T, N, I});
  auto h0 = arg<Real>(h0_, "h0", {N, H}, false, true);
  auto W_ih = arg<Real>(W_ih_, "W_ih", {GH, I});
  auto W_hh = arg<Real>(W_hh_, "W_hh", {GH, H});
  auto y = arg<Real>(y_, "y", {T, N, H}, false, false, true);
  auto cache = arg<Real>(cache_, "cache", {Cell::cache_size(T, N, H)}, true);
  auto dW_ih = arg<Real>(dW_ih_, "dW_ih", {GH, I}, true);
  auto dW_hh = arg<Real>(dW_hh_, "dW_hh", {GH, H}, true);
  auto db_ih = arg<Real>(db_ih_, "db_ih", {GH}, true, true);
  auto db_hh = arg<Real>(db_hh_, "db_hh", {GH}, true, true);
  both_or_neither(db_ih, db_hh);
  // Without input_grad, ∂L/∂x is not computed (as torch skips it for an input that does not require a gradient).
  if (!input_grad && !dx_.is_none()) throw py::value_error("dx must be None when input_grad is False");
  py::object dx_obj = input_grad ? out_or_new<Real>(dx_, {T, N, I}, true) : py::none();
  auto dx = input_grad ? arg<Real>(dx_obj, "dx", {T, N, I}, true) : Arg<Real>{};
  no_overlap<Real>({&dx, &cache, &dW_ih, &dW_hh, &db_ih, &db_hh},
                   {&dx, &dy, &dh_n, &x, &h0, &W_ih, &W_hh, &y, &cache, &dW_ih, &dW_hh, &db_ih, &db_hh});
  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  py::array_t<Real> dh0({N, H});
  auto work = workspace<Real>(Cell::workspace_size(Pass::Backward, T, N, I, H));
  {
    py::gil_scoped_release nogil;
    Cell::template backward<Real>(variant, reverse, batch_sizes, dx.ptr, dh0.mutable_data(), dW_ih.ptr, dW_hh.ptr,
                                  db_ih.ptr, db_hh.ptr, cache.ptr, work.get(), dy.ptr, dy.ld, dh_n.ptr, x.ptr, y.ptr,
                                  y.ld, h0.ptr, W_ih.ptr, W_hh.ptr, T, N, I, H);
  }
  return py::make_tuple(dx_obj, dh0);
}

// Binds <name>_forward and <name>_backward of a one-state cell; `variant` names its keyword and how to read it.
template <class Cell, class V, class Parse>
void bind_single(py::module_& m, const char* name, const char* variant_name, V variant_default, Parse parse) {
  m.def(
      (std::string(name) + "_forward").c_str(),
      [parse](py::array x, py::object h0, py::array W_ih, py::array W_hh, py::object b_ih, py::object b_hh, V variant,
              bool reverse, bool training, py::object y, py::object batch_sizes) {
        const int v = parse(variant);
        return with_real(x, [&](auto real) {
          return single_forward_t<Cell, decltype(real)>(x, h0, W_ih, W_hh, b_ih, b_hh, v, reverse, training, y,
                                                        batch_sizes);
        });
      },
      py::arg("x"), py::arg("h0"), py::arg("W_ih"), py::arg("W_hh"), py::arg("b_ih"), py::arg("b_hh"), py::kw_only(),
      py::arg(variant_name) = variant_default, py::arg("reverse") = false, py::arg("training") = true,
      py::arg("y") = py::none(), py::arg("batch_sizes") = py::none(),
      "One layer direction over a sequence. Returns (y, h_n, cache); cache is None unless training. batch_sizes: "
      "variable lengths as PyTorch's packed sequences count them (rows running per step, sorted batch).");
  m.def(
      (std::string(name) + "_backward").c_str(),
      [parse](py::object dy, py::object dh_n, py::array x, py::object h0, py::array W_ih, py::array W_hh, py::object y,
              py::object cache, py::object dW_ih, py::object dW_hh, py::object db_ih, py::object db_hh, V variant,
              bool reverse, py::object dx, bool input_grad, py::object batch_sizes) {
        const int v = parse(variant);
        return with_real(x, [&](auto real) {
          return single_backward_t<Cell, decltype(real)>(dy, dh_n, x, h0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih,
                                                         db_hh, v, reverse, dx, input_grad, batch_sizes);
        });
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("x"), py::arg("h0"), py::arg("W_ih"), py::arg("W_hh"), py::arg("y"),
      py::arg("cache"), py::arg("dW_ih"), py::arg("dW_hh"), py::arg("db_ih"), py::arg("db_hh"), py::kw_only(),
      py::arg(variant_name) = variant_default, py::arg("reverse") = false, py::arg("dx") = py::none(),
      py::arg("input_grad") = true, py::arg("batch_sizes") = py::none(),
      "Backward through one forward(training=True). Accumulates into dW_*, db_* and dx (zeros when None); "
      "consumes cache. Returns (dx, dh0); dx is None (and not computed) with input_grad=False.");
}

template <class Real>
py::array_t<Real> activation(py::array x_, void (*f)(Real*, const Real*, index_t)) {
  auto x = arg<Real>(x_, "x", {static_cast<index_t>(x_.size())});
  py::array_t<Real> out(x_.size());
  {
    py::gil_scoped_release nogil;
    f(out.mutable_data(), x.ptr, static_cast<index_t>(x_.size()));
  }
  return out;
}

py::array activation_dispatch(py::array x, bool sigmoid) {
  if (x.ndim() != 1) throw py::value_error("x must be 1-D, got shape " + shape_of(x));
  if (py::isinstance<py::array_t<float>>(x))
    return activation<float>(x, sigmoid ? pylstm::kernels().f32.sigmoid : pylstm::kernels().f32.tanh);
  if (py::isinstance<py::array_t<double>>(x))
    return activation<double>(x, sigmoid ? pylstm::kernels().f64.sigmoid : pylstm::kernels().f64.tanh);
  throw py::type_error("x must have dtype float32 or float64, got " + std::string(py::str(x.dtype())));
}


// ---- the training step's pieces around the layers (train.h) ----

// Calls f(Real{}) with Real the float type of `a` (named `name` in the error).
template <class F>
auto with_real_named(const py::array& a, const char* name, F&& f) {
  if (py::isinstance<py::array_t<float>>(a)) return f(float{});
  if (py::isinstance<py::array_t<double>>(a)) return f(double{});
  throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " + std::string(py::str(a.dtype())));
}

template <class Real>
py::array_t<Real> linear_forward_t(const py::array& x_, const py::array& W_, const py::object& b_) {
  if (x_.ndim() != 2) throw py::value_error("x must have shape (N, in_features), got " + shape_of(x_));
  if (W_.ndim() != 2) throw py::value_error("W must have shape (out_features, in_features), got " + shape_of(W_));
  const index_t N = x_.shape(0), I = x_.shape(1), O = W_.shape(0);
  auto x = arg<Real>(x_, "x", {N, I});
  auto W = arg<Real>(W_, "W", {O, I});
  auto b = arg<Real>(b_, "b", {O}, false, true);
  py::array_t<Real> y(std::vector<py::ssize_t>{static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(O)});
  Real* yp = y.mutable_data();
  py::gil_scoped_release nogil;
  pylstm::linear_forward<Real>(yp, x.ptr, W.ptr, b.ptr, N, I, O);
  return y;
}

template <class Real>
py::object linear_backward_t(const py::array& dy_, const py::array& x_, const py::array& W_, const py::object& dW_,
                             const py::object& db_, bool input_grad) {
  if (dy_.ndim() != 2) throw py::value_error("dy must have shape (N, out_features), got " + shape_of(dy_));
  if (W_.ndim() != 2) throw py::value_error("W must have shape (out_features, in_features), got " + shape_of(W_));
  const index_t N = dy_.shape(0), O = W_.shape(0), I = W_.shape(1);
  auto dy = arg<Real>(dy_, "dy", {N, O});
  auto x = arg<Real>(x_, "x", {N, I});
  auto W = arg<Real>(W_, "W", {O, I});
  auto dW = arg<Real>(dW_, "dW", {O, I}, true);
  auto db = arg<Real>(db_, "db", {O}, true, true);
  no_overlap<Real>({&dW, &db}, {&dy, &x, &W, &dW, &db});
  py::object dx_obj = py::none();
  Real* dx = nullptr;
  if (input_grad) {
    py::array_t<Real> a(std::vector<py::ssize_t>{static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(I)});
    dx = a.mutable_data();
    dx_obj = a;
  }
  {
    py::gil_scoped_release nogil;
    pylstm::linear_backward<Real>(dx, dW.ptr, db.ptr, dy.ptr, x.ptr, W.ptr, N, I, O);
  }
  return dx_obj;
}

template <class Real>
py::tuple softmax_cross_entropy_t(const py::array& logits_, const py::array& targets_) {
  if (logits_.ndim() != 2 || logits_.shape(1) < 1)
    throw py::value_error("logits must have shape (N, C) with C >= 1, got " + shape_of(logits_));
  const index_t N = logits_.shape(0), C = logits_.shape(1);
  auto logits = arg<Real>(logits_, "logits", {N, C});
  auto targets = arg<std::int64_t>(targets_, "targets", {N});
  for (index_t r = 0; r < N; ++r)
    if (targets.ptr[r] < 0 || targets.ptr[r] >= C)
      throw py::value_error("targets must be in [0, " + std::to_string(C) + "), got " +
                            std::to_string(targets.ptr[r]) + " at row " + std::to_string(r));
  if (N == 0) throw py::value_error("logits must have at least one row");
  py::array_t<Real> d(std::vector<py::ssize_t>{static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(C)});
  Real* dp = d.mutable_data();
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = pylstm::softmax_cross_entropy<Real>(dp, logits.ptr, targets.ptr, N, C);
  }
  return py::make_tuple(loss, d);
}

// The optimizers' tensor lists: same length, each entry a dense writable array of dtype Real whose size matches its
// parameter's (state lists may be None).
template <class Real>
std::vector<pylstm::TensorSlot<Real>> slots_of(const py::list& params, const py::list& grads, const py::object& m,
                                               const py::object& v, bool grads_only = false) {
  const size_t n = params.size();
  auto same_length = [n](const py::object& l, const char* name) {
    if (!l.is_none() && py::len(l) != n)
      throw py::value_error(std::string(name) + " must have as many arrays as params (" + std::to_string(n) +
                            "), got " + std::to_string(py::len(l)));
  };
  same_length(grads, "grads");
  same_length(m, "m");
  same_length(v, "v");
  std::vector<pylstm::TensorSlot<Real>> slots;
  std::vector<Arg<Real>> all;
  for (size_t k = 0; k < n; ++k) {
    py::handle p_obj = params[k];
    if (!py::isinstance<py::array>(p_obj))
      throw py::type_error("params[" + std::to_string(k) + "] must be a numpy.ndarray");
    const auto pa = py::reinterpret_borrow<py::array>(p_obj);
    std::vector<index_t> shape(pa.shape(), pa.shape() + pa.ndim());
    const std::string i = "[" + std::to_string(k) + "]";
    const std::string pn = "params" + i, gn = "grads" + i, mn = "m" + i, vn = "v" + i;
    auto g = arg<Real>(grads[k], gn.c_str(), shape, true);
    auto p = grads_only ? Arg<Real>{} : arg<Real>(p_obj, pn.c_str(), shape, true);
    auto mm = arg<Real>(m.is_none() ? py::handle(py::none()) : py::handle(m.cast<py::list>()[k]), mn.c_str(), shape,
                        true, true);
    auto vv = arg<Real>(v.is_none() ? py::handle(py::none()) : py::handle(v.cast<py::list>()[k]), vn.c_str(), shape,
                        true, true);
    for (const Arg<Real>* a : {&p, &g, &mm, &vv})
      for (const Arg<Real>& o : all)
        if (a->ptr && o.ptr && a->lo < o.hi && o.lo < a->hi)
          throw py::value_error((grads_only ? gn : pn + ", " + gn + " and their state") +
                                " must not share memory with another tensor");
    no_overlap<Real>({&p, &g, &mm, &vv}, {&p, &g, &mm, &vv});
    all.insert(all.end(), {p, g, mm, vv});
    slots.push_back({grads_only ? g.ptr : p.ptr, g.ptr, mm.ptr, vv.ptr, static_cast<index_t>(pa.size())});
  }
  return slots;
}

// The dtype of a list's first array, for with_real_named (float32 when empty).
py::array first_array(const py::list& l, const char* name) {
  if (l.size() == 0) return py::array_t<float>(0);
  if (!py::isinstance<py::array>(l[0])) throw py::type_error(std::string(name) + "[0] must be a numpy.ndarray");
  return py::reinterpret_borrow<py::array>(l[0]);
}

void bind_train(py::module_& m) {
  m.def(
      "linear_forward",
      [](py::array x, py::array W, py::object b) {
        return with_real_named(x, "x", [&](auto real) -> py::object {
          return linear_forward_t<decltype(real)>(x, W, b);
        });
      },
      py::arg("x"), py::arg("W"), py::arg("b"), "y = x Wᵀ + b for x (N, I), W (O, I), b (O,) or None.");
  m.def(
      "linear_backward",
      [](py::array dy, py::array x, py::array W, py::object dW, py::object db, bool input_grad) {
        return with_real_named(dy, "dy", [&](auto real) {
          return linear_backward_t<decltype(real)>(dy, x, W, dW, db, input_grad);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("W"), py::arg("dW"), py::arg("db"), py::kw_only(),
      py::arg("input_grad") = true, "dW += dyᵀ x, db += Σ dy (db may be None); returns dx = dy W, or None.");
  m.def(
      "softmax_cross_entropy",
      [](py::array logits, py::array targets) {
        return with_real_named(logits, "logits", [&](auto real) {
          return softmax_cross_entropy_t<decltype(real)>(logits, targets);
        });
      },
      py::arg("logits"), py::arg("targets"),
      "(mean cross-entropy, dL/dlogits) of softmax(logits (N, C)) against int64 targets (N,).");
  m.def(
      "adam_step",
      [](py::list params, py::list grads, py::list m1, py::list m2, double lr, double b1, double b2, double eps,
         long step) {
        with_real_named(first_array(params, "params"), "params", [&](auto real) {
          using Real = decltype(real);
          auto slots = slots_of<Real>(params, grads, m1, m2);
          for (const auto& sl : slots)
            if (!sl.m || !sl.v) throw py::value_error("adam_step needs m and v for every parameter");
          py::gil_scoped_release nogil;
          pylstm::adam_step<Real>(slots, lr, b1, b2, eps, step);
          return 0;
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("m"), py::arg("v"), py::kw_only(), py::arg("lr"), py::arg("b1"),
      py::arg("b2"), py::arg("eps"), py::arg("step"), "One Adam step over every tensor, in place.");
  m.def(
      "sgd_step",
      [](py::list params, py::list grads, py::object bufs, double lr, double momentum) {
        with_real_named(first_array(params, "params"), "params", [&](auto real) {
          using Real = decltype(real);
          auto slots = slots_of<Real>(params, grads, bufs, py::none());
          py::gil_scoped_release nogil;
          pylstm::sgd_step<Real>(slots, lr, momentum);
          return 0;
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::kw_only(), py::arg("lr"),
      py::arg("momentum"), "One SGD step over every tensor, in place (momentum_buffers None: no momentum).");
  m.def(
      "grad_norm",
      [](py::list grads) {
        return with_real_named(first_array(grads, "grads"), "grads", [&](auto real) {
          using Real = decltype(real);
          auto slots = slots_of<Real>(grads, grads, py::none(), py::none(), true);
          py::gil_scoped_release nogil;
          return pylstm::grad_norm<Real>(slots);
        });
      },
      py::arg("grads"), "√(Σ g²) over every array, accumulated in float64.");
  m.def(
      "scale_grads",
      [](py::list grads, double scale) {
        with_real_named(first_array(grads, "grads"), "grads", [&](auto real) {
          using Real = decltype(real);
          auto slots = slots_of<Real>(grads, grads, py::none(), py::none(), true);
          py::gil_scoped_release nogil;
          pylstm::scale_grads<Real>(slots, static_cast<Real>(scale));
          return 0;
        });
      },
      py::arg("grads"), py::arg("scale"), "g *= scale over every array, in place.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pylstm compiled kernels (private; use the pylstm package). Mirrors pylstm.reference name for name.";
  // Choose the kernel table now, so that an invalid PYLSTM_ISA fails the import (pybind11 raises ImportError with
  // the message) instead of a later call.
  pylstm::kernels();

  py::class_<PackedLstm>(m, "PackedLstm",
                         "Room for one float32 LSTM layer direction's packed weights (input size I, hidden size H), "
                         "kept between calls while the weights do not change.")
      .def(py::init([](index_t I, index_t H) {
             if (I < 1 || H < 1)
               throw py::value_error("I and H must be >= 1, got " + std::to_string(I) + " and " + std::to_string(H));
             return new PackedLstm(I, H);
           }),
           py::arg("I"), py::arg("H"))
      .def_readonly("I", &PackedLstm::I)
      .def_readonly("H", &PackedLstm::H)
      .def_property_readonly("ready", [](const PackedLstm& p) { return p.ready; },
                             "Whether it holds the weights of the last call that packed into it.")
      .def("invalidate", [](PackedLstm& p) { p.ready = false; }, "Marks the packed weights stale.");

  m.def(
      "lstm_forward",
      [](py::array x, py::object h0, py::object c0, py::array W_ih, py::array W_hh, py::object b_ih, py::object b_hh,
         py::object W_hr, bool reverse, bool training, py::object y, py::object packed, py::object batch_sizes,
         py::object P) {
        return with_real(x, [&](auto real) {
          return lstm_forward_t<decltype(real)>(x, h0, c0, W_ih, W_hh, b_ih, b_hh, W_hr, reverse, training, y,
                                                packed, batch_sizes, P);
        });
      },
      py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("W_ih"), py::arg("W_hh"), py::arg("b_ih"), py::arg("b_hh"),
      py::kw_only(), py::arg("W_hr") = py::none(), py::arg("reverse") = false, py::arg("training") = true,
      py::arg("y") = py::none(), py::arg("packed") = py::none(), py::arg("batch_sizes") = py::none(),
      py::arg("P") = py::none(),
      "One LSTM layer direction over a sequence. Returns (y, h_n, c_n, cache); cache is None unless training. "
      "packed: a PackedLstm that the float32 loop without projection reuses when ready (the caller guarantees "
      "the weights are those it was packed from) and packs into otherwise. P: peephole weights (3H,) = p_i, p_f, "
      "p_o, or None.");

  m.def(
      "lstm_pack",
      [](PackedLstm& packed, py::array W_ih_, py::array W_hh_, py::object b_ih_, py::object b_hh_) {
        const index_t I = packed.I, H = packed.H, GH = pylstm::kLstmGates * H;
        auto W_ih = arg<float>(W_ih_, "W_ih", {GH, I});
        auto W_hh = arg<float>(W_hh_, "W_hh", {GH, H});
        auto b_ih = arg<float>(b_ih_, "b_ih", {GH}, false, true);
        auto b_hh = arg<float>(b_hh_, "b_hh", {GH}, false, true);
        both_or_neither(b_ih, b_hh);
        auto work = workspace<float>(GH);
        pylstm::LstmPacked keep{packed.data.get(), false};
        packed.ready = false;
        {
          py::gil_scoped_release nogil;
          pylstm::lstm_pack(keep, work.get(), W_ih.ptr, W_hh.ptr, b_ih.ptr, b_hh.ptr, I, H);
        }
        packed.ready = keep.ready;
      },
      py::arg("packed"), py::arg("W_ih"), py::arg("W_hh"), py::arg("b_ih"), py::arg("b_hh"),
      "Packs one float32 LSTM layer direction's weights into packed (made for their I and H).");

  m.def(
      "lstm_stream_step",
      [](py::array x_, py::array h_prev_, py::array h_new_, py::array c_, const std::vector<PackedLstm*>& packs) {
        const index_t L = static_cast<index_t>(packs.size());
        if (L < 1) throw py::value_error("packs must hold one PackedLstm per layer, got none");
        if (x_.ndim() != 2) throw py::value_error("x must have shape (N, I), got " + shape_of(x_));
        for (const PackedLstm* p : packs)
          if (!p) throw py::type_error("packs must hold PackedLstm objects, got None");
        const index_t N = x_.shape(0), I0 = x_.shape(1), H = packs[0]->H, GH = pylstm::kLstmGates * H;
        for (index_t l = 0; l < L; ++l) {
          const PackedLstm* p = packs[static_cast<size_t>(l)];
          const index_t want_I = l == 0 ? I0 : H;
          if (p->I != want_I || p->H != H)
            throw py::value_error("packs[" + std::to_string(l) + "] was made for (I, H) = (" + std::to_string(p->I) +
                                  ", " + std::to_string(p->H) + "), layer " + std::to_string(l) + " needs (" +
                                  std::to_string(want_I) + ", " + std::to_string(H) + ")");
          if (!p->ready) throw py::value_error("packs[" + std::to_string(l) + "] holds no packed weights");
        }
        auto x = arg<float>(x_, "x", {N, I0});
        auto h_prev = arg<float>(h_prev_, "h_prev", {L, N, H});
        auto h_new = arg<float>(h_new_, "h_new", {L, N, H}, true);
        auto c = arg<float>(c_, "c", {L, N, H}, true);
        no_overlap<float>({&h_new, &c}, {&x, &h_prev, &h_new, &c});
        std::vector<const float*> packed(static_cast<size_t>(L));
        for (index_t l = 0; l < L; ++l) packed[static_cast<size_t>(l)] = packs[static_cast<size_t>(l)]->data.get();
        auto work = workspace<float>(N * GH);
        py::gil_scoped_release nogil;
        pylstm::lstm_stream_step(h_new.ptr, c.ptr, work.get(), x.ptr, h_prev.ptr, packed.data(), L, N, I0, H);
      },
      py::arg("x"), py::arg("h_prev"), py::arg("h_new"), py::arg("c"), py::arg("packs"),
      "One inference step of a stack of float32 LSTM layers without projection, from packed weights: reads x "
      "(N, I) and h_prev (L, N, H), writes h_new (L, N, H) and updates c (L, N, H) in place.");

  m.def(
      "lstm_backward",
      [](py::object dy, py::object dh_n, py::object dc_n, py::array x, py::object h0, py::object c0, py::array W_ih,
         py::array W_hh, py::object y, py::object cache, py::object dW_ih, py::object dW_hh, py::object db_ih,
         py::object db_hh, py::object W_hr, py::object dW_hr, bool reverse, py::object dx, bool input_grad,
         py::object batch_sizes, py::object P, py::object dP) {
        return with_real(x, [&](auto real) {
          return lstm_backward_t<decltype(real)>(dy, dh_n, dc_n, x, h0, c0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih,
                                                 db_hh, W_hr, dW_hr, reverse, dx, input_grad, batch_sizes, P, dP);
        });
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("W_ih"),
      py::arg("W_hh"), py::arg("y"), py::arg("cache"), py::arg("dW_ih"), py::arg("dW_hh"), py::arg("db_ih"),
      py::arg("db_hh"), py::kw_only(), py::arg("W_hr") = py::none(), py::arg("dW_hr") = py::none(),
      py::arg("reverse") = false, py::arg("dx") = py::none(), py::arg("input_grad") = true,
      py::arg("batch_sizes") = py::none(), py::arg("P") = py::none(), py::arg("dP") = py::none(),
      "Backward through one lstm_forward(training=True). Accumulates into dW_*, db_*, dP and dx (allocated as "
      "zeros when None); consumes cache. Returns (dx, dh0, dc0); dx is None (and not computed) with "
      "input_grad=False. P and dP (peepholes): both or neither.");

  bind_single<Gru>(m, "gru", "linear_before_reset", true, [](bool v) { return v ? 1 : 0; });
  bind_single<Rnn>(m, "rnn", "nonlinearity", std::string("tanh"), [](const std::string& v) { return nonlinearity(v); });

  m.def("sigmoid", [](py::array x) { return activation_dispatch(x, true); }, py::arg("x"),
        "The gate kernels' sigmoid over a 1-D C-contiguous array.");
  m.def("tanh", [](py::array x) { return activation_dispatch(x, false); }, py::arg("x"),
        "The gate kernels' tanh over a 1-D C-contiguous array.");
  m.def("lstm_cache_size", &pylstm::lstm_cache_size, py::arg("T"), py::arg("N"), py::arg("H"));
  m.def("gru_cache_size", &pylstm::gru_cache_size, py::arg("T"), py::arg("N"), py::arg("H"));
  m.def("rnn_cache_size", &pylstm::rnn_cache_size, py::arg("T"), py::arg("N"), py::arg("H"));
  m.def("get_num_threads", &pylstm::get_num_threads, "Threads the kernels use.");
  m.def("set_num_threads", &pylstm::set_num_threads, py::arg("n"), "Sets the threads the kernels use (n >= 1).");
  m.def("blas_config", &pylstm::blas_config, "The build and core of the OpenBLAS in use.");
  bind_train(m);
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
  m.def("isa", [] { return std::string(pylstm::kernels().isa); }, "The ISA level of the kernels in use.");
  m.def("isa_lanes", [] { return pylstm::kernels().lanes; }, "float32 lanes of the vectors of the level in use.");
  m.def("isa_available", &pylstm::isa_available, "The ISA levels this CPU runs, best first.");
  m.def("_choose_isa", &pylstm::choose_isa, py::arg("cap"), py::arg("available"),
        "The level PYLSTM_ISA=cap selects on a CPU that runs `available` (for tests of the messages).");
}
