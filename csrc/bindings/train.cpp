// The bindings of the training step's pieces around the layers (train.h): the linear layer, softmax cross-entropy,
// the optimizer steps and the gradient-norm passes.
#include "bindings/args.h"
#include "train.h"

namespace pylstm::bind {

namespace {

// Calls f(Real{}) with Real the float type of `a` (named `name` in the error).
template <class F>
auto with_real_named(const py::array& a, const char* name, F&& f) {
  return with_real(a, std::forward<F>(f), name);
}

template <class Real>
py::array_t<Real> linear_forward_t(const py::array& x_, const py::array& W_, const py::object& b_) {
  if (x_.ndim() != 2) throw py::value_error("x must have shape (N, in_features), got " + shape_of(x_));
  if (W_.ndim() != 2) throw py::value_error("W must have shape (out_features, in_features), got " + shape_of(W_));
  const index_t N = x_.shape(0), I = x_.shape(1), O = W_.shape(0);
  auto x = arg<Real>(x_, "x", {N, I});
  auto W = arg<Real>(W_, "W", {O, I});
  auto b = arg<Real>(b_, "b", {O}, false, true);
  py::array_t<Real> y = new_array<Real>({N, O});
  Real* yp = y.mutable_data();
  without_gil([=] { pylstm::linear_forward<Real>(yp, x.ptr, W.ptr, b.ptr, N, I, O); });
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
    py::array_t<Real> a = new_array<Real>({N, I});
    dx = a.mutable_data();
    dx_obj = a;
  }
  without_gil([=] { pylstm::linear_backward<Real>(dx, dW.ptr, db.ptr, dy.ptr, x.ptr, W.ptr, N, I, O); });
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
  py::array_t<Real> d = new_array<Real>({N, C});
  Real* dp = d.mutable_data();
  const double loss =
      without_gil([=] { return pylstm::softmax_cross_entropy<Real>(dp, logits.ptr, targets.ptr, N, C); });
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

}  // namespace

void bind_train(py::module_& m) {
  m.def(
      "copy",
      [](py::array a) {
        return with_real_named(a, "a", [&](auto real) -> py::object {
          using Real = decltype(real);
          if (!(a.flags() & py::array::c_style)) throw py::value_error("a must be C-contiguous");
          std::vector<index_t> shape(a.shape(), a.shape() + a.ndim());
          auto src = arg<Real>(a, "a", shape);
          py::array_t<Real> out = new_array<Real>(shape);
          Real* dst = out.mutable_data();
          const index_t n = static_cast<index_t>(a.size());
          without_gil([=] { pylstm::copy_split<Real>(dst, src.ptr, n); });
          return out;
        });
      },
      py::arg("a"),
      "A copy of the C-contiguous float array a in new aligned memory, made by the pool's threads in contiguous "
      "parts (as a product over its rows splits them).");
  m.def(
      "linear_forward",
      [](py::array x, py::array W, py::object b) {
        return with_real(x, [&](auto real) -> py::object {
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
          const auto* sp = &slots;  // the slots hold plain pointers; the vector itself is read in place
          without_gil([=] { pylstm::adam_step<Real>(*sp, lr, b1, b2, eps, step); });
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
          const auto* sp = &slots;
          without_gil([=] { pylstm::sgd_step<Real>(*sp, lr, momentum); });
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
          const auto* sp = &slots;
          return without_gil([=] { return pylstm::grad_norm<Real>(*sp); });
        });
      },
      py::arg("grads"), "√(Σ g²) over every array, accumulated in float64.");
  m.def(
      "scale_grads",
      [](py::list grads, double scale) {
        with_real_named(first_array(grads, "grads"), "grads", [&](auto real) {
          using Real = decltype(real);
          auto slots = slots_of<Real>(grads, grads, py::none(), py::none(), true);
          const auto* sp = &slots;
          without_gil([=] { pylstm::scale_grads<Real>(*sp, static_cast<Real>(scale)); });
          return 0;
        });
      },
      py::arg("grads"), py::arg("scale"), "g *= scale over every array, in place.");
  m.def(
      "bernoulli",
      [](py::array out_, double p, std::uint64_t seed, double below, double above) {
        if (!(p >= 0 && p <= 1)) throw py::value_error("p must be in [0, 1], got " + std::to_string(p));
        if (out_.ndim() == 0) throw py::value_error("out must have at least one dimension, got a 0-d array");
        with_real_named(out_, "out", [&](auto real) {
          using Real = decltype(real);
          std::vector<index_t> shape(out_.shape(), out_.shape() + out_.ndim());
          auto out = arg<Real>(out_, "out", shape, true);
          const index_t n = static_cast<index_t>(out_.size());
          Real* o = out.ptr;
          without_gil([=] { pylstm::bernoulli_fill<Real>(o, n, seed, p, Real(below), Real(above)); });
          return 0;
        });
      },
      py::arg("out"), py::arg("p"), py::arg("seed"), py::kw_only(), py::arg("below") = 1.0, py::arg("above") = 0.0,
      "Fills out (C-contiguous float32 or float64, any shape) with `below` with probability p and `above` "
      "otherwise, from a counter-based generator keyed by seed: value i depends on (seed, i) only "
      "(reference.bernoulli).");
}

}  // namespace pylstm::bind
