// The bindings of the cells with one state, GRU and RNN: gru_forward / gru_backward and rnn_forward / rnn_backward
// share one implementation; each cell's variant keeps its own type (linear_before_reset a bool, the nonlinearity the
// core's enum), never an int.
#include "bindings/args.h"
#include "gru.h"
#include "rnn.h"

namespace pylstm::bind {

namespace {

struct Gru {
  using Variant = bool;  // linear_before_reset
  static constexpr index_t G = pylstm::kGruGates;
  static index_t cache_size(index_t T, index_t N, index_t H) { return pylstm::gru_cache_size(T, N, H); }
  static index_t workspace_size(Pass p, index_t T, index_t N, index_t I, index_t H) {
    return pylstm::gru_workspace_size(p, T, N, I, H);
  }
  static constexpr auto forward = [](auto&&... a) { pylstm::gru_forward(a...); };
  static constexpr auto backward = [](auto&&... a) { pylstm::gru_backward(a...); };
};

struct Rnn {
  using Variant = pylstm::Nonlinearity;
  static constexpr index_t G = 1;
  static index_t cache_size(index_t T, index_t N, index_t H) { return pylstm::rnn_cache_size(T, N, H); }
  static index_t workspace_size(Pass p, index_t T, index_t N, index_t I, index_t H) {
    return pylstm::rnn_workspace_size(p, T, N, I, H);
  }
  static constexpr auto forward = [](auto&&... a) { pylstm::rnn_forward(a...); };
  static constexpr auto backward = [](auto&&... a) { pylstm::rnn_backward(a...); };
};

pylstm::Nonlinearity nonlinearity(const std::string& s) {
  if (s == "tanh") return pylstm::Nonlinearity::Tanh;
  if (s == "relu") return pylstm::Nonlinearity::Relu;
  if (s == "sigmoid") return pylstm::Nonlinearity::Sigmoid;
  throw py::value_error("nonlinearity must be 'tanh', 'relu' or 'sigmoid', got '" + s + "'");
}

template <class Cell, class Real>
py::tuple single_forward_t(py::array x_, py::object h0_, py::array W_ih_, py::array W_hh_, py::object b_ih_,
                           py::object b_hh_, typename Cell::Variant variant, bool reverse, bool training, py::object y_,
                           py::object batch_sizes_, py::object rd_mask_, py::object rd_masked_,
                           py::object zk_h_, double z_h, py::object cache_) {
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
  auto [rd_mask, rd_masked] = recurrent_dropout_args<Real>(rd_mask_, rd_masked_, T, N, H, training);
  const auto za = zoneout_args<Real>(py::none(), zk_h_, 0.0, z_h, T, N, H, 1);
  const auto zone = za.zone;
  Arg<Real> cache_arg;
  py::object cache_obj = new_cache<Real>(training, Cell::cache_size(T, N, H), cache_arg, cache_);
  no_overlap<Real>({&y, &rd_masked, &cache_arg},
                   {&x, &h0, &W_ih, &W_hh, &b_ih, &b_hh, &rd_mask, &y, &rd_masked, &za.keep_h, &cache_arg});
  py::array_t<Real> h_n = new_array<Real>({N, H});
  Real* const cache = cache_arg.ptr;
  auto work = workspace<Real>(Cell::workspace_size(training ? Pass::TrainingForward : Pass::Inference, T, N, I, H));
  Real *hn = h_n.mutable_data(), *wk = work.get();
  const pylstm::Dims d{T, N, I, H, H};
  const pylstm::Weights<Real> w{W_ih.ptr, W_hh.ptr, b_ih.ptr, b_hh.ptr, nullptr, nullptr};
  const pylstm::Run run{reverse, batch_sizes};
  const pylstm::RecurrentDropout<Real> rd{rd_mask.ptr, rd_masked.ptr};
  without_gil([=] { Cell::forward(d, w, x.ptr, h0.ptr, y.ptr, y.ld, hn, cache, wk, variant, run, rd, zone); });
  return py::make_tuple(y_obj, h_n, cache_obj);
}

template <class Cell, class Real>
py::tuple single_backward_t(py::object dy_, py::object dh_n_, py::array x_, py::object h0_, py::array W_ih_,
                            py::array W_hh_, py::object y_, py::object cache_, py::object dW_ih_, py::object dW_hh_,
                            py::object db_ih_, py::object db_hh_, typename Cell::Variant variant, bool reverse, py::object dx_,
                            bool input_grad, py::object batch_sizes_, py::object rd_mask_, py::object rd_masked_,
                            py::object zk_h_) {
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
  auto [rd_mask, rd_masked] = recurrent_dropout_args<Real>(rd_mask_, rd_masked_, T, N, H, true);
  const auto za = zoneout_args<Real>(py::none(), zk_h_, 0.0, 0.0, T, N, H, 1);
  const auto zone = za.zone;
  no_overlap<Real>({&dx, &cache, &dW_ih, &dW_hh, &db_ih, &db_hh},
                   {&dx, &dy, &dh_n, &x, &h0, &W_ih, &W_hh, &y, &cache, &dW_ih, &dW_hh, &db_ih, &db_hh, &rd_mask,
                    &rd_masked, &za.keep_h});
  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  py::array_t<Real> dh0 = new_array<Real>({N, H});
  auto work = workspace<Real>(Cell::workspace_size(Pass::Backward, T, N, I, H));
  Real *d_h0 = dh0.mutable_data(), *wk = work.get();
  const pylstm::Dims d{T, N, I, H, H};
  const pylstm::Weights<Real> w{W_ih.ptr, W_hh.ptr, nullptr, nullptr, nullptr, nullptr};
  const pylstm::Grads<Real> g{dW_ih.ptr, dW_hh.ptr, db_ih.ptr, db_hh.ptr, nullptr, nullptr};
  const pylstm::Recorded<Real> fwd{x.ptr, y.ptr, y.ld, h0.ptr, nullptr};
  const pylstm::OutputGrads<Real> out{dy.ptr, dy.ld, dh_n.ptr, nullptr};
  const pylstm::Run run{reverse, batch_sizes};
  const pylstm::RecurrentDropout<Real> rd{rd_mask.ptr, rd_masked.ptr};
  without_gil([=] { Cell::backward(d, w, g, fwd, out, dx.ptr, d_h0, cache.ptr, wk, variant, run, rd, zone); });
  return py::make_tuple(dx_obj, dh0);
}

// Binds <name>_forward and <name>_backward of a one-state cell; `variant` names its keyword and how to read it.
template <class Cell, class V, class Parse>
void bind_one_state(py::module_& m, const char* name, const char* variant_name, V variant_default, Parse parse) {
  m.def(
      (std::string(name) + "_forward").c_str(),
      [parse](py::array x, py::object h0, py::array W_ih, py::array W_hh, py::object b_ih, py::object b_hh, V variant,
              bool reverse, bool training, py::object y, py::object batch_sizes, py::object rd_mask,
              py::object rd_masked, py::object zone_keep_h, double zone_h, py::object cache) {
        const typename Cell::Variant v = parse(variant);
        return with_real(x, [&](auto real) {
          return single_forward_t<Cell, decltype(real)>(x, h0, W_ih, W_hh, b_ih, b_hh, v, reverse, training, y,
                                                        batch_sizes, rd_mask, rd_masked, zone_keep_h, zone_h, cache);
        });
      },
      py::arg("x"), py::arg("h0"), py::arg("W_ih"), py::arg("W_hh"), py::arg("b_ih"), py::arg("b_hh"), py::kw_only(),
      py::arg(variant_name) = variant_default, py::arg("reverse") = false, py::arg("training") = true,
      py::arg("y") = py::none(), py::arg("batch_sizes") = py::none(), py::arg("rd_mask") = py::none(),
      py::arg("rd_masked") = py::none(), py::arg("zone_keep_h") = py::none(), py::arg("zone_h") = 0.0,
      py::arg("cache") = py::none(),
      "One layer direction over a sequence. Returns (y, h_n, cache); cache is None unless training. batch_sizes: "
      "variable lengths as PyTorch's packed sequences count them (rows running per step, sorted batch). rd_mask "
      "(N, H) and rd_masked (T + 1, N, H), training only: recurrent dropout, as lstm_forward. zone_keep_h (T, N, H) "
      "in training, zone_h in inference: zoneout of h, as lstm_forward (the GRU's; the RNN refuses it). cache: as "
      "lstm_forward's, an array of the cache's size to fill, or None.");
  m.def(
      (std::string(name) + "_backward").c_str(),
      [parse](py::object dy, py::object dh_n, py::array x, py::object h0, py::array W_ih, py::array W_hh, py::object y,
              py::object cache, py::object dW_ih, py::object dW_hh, py::object db_ih, py::object db_hh, V variant,
              bool reverse, py::object dx, bool input_grad, py::object batch_sizes, py::object rd_mask,
              py::object rd_masked, py::object zone_keep_h) {
        const typename Cell::Variant v = parse(variant);
        return with_real(x, [&](auto real) {
          return single_backward_t<Cell, decltype(real)>(dy, dh_n, x, h0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih,
                                                         db_hh, v, reverse, dx, input_grad, batch_sizes, rd_mask,
                                                         rd_masked, zone_keep_h);
        });
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("x"), py::arg("h0"), py::arg("W_ih"), py::arg("W_hh"), py::arg("y"),
      py::arg("cache"), py::arg("dW_ih"), py::arg("dW_hh"), py::arg("db_ih"), py::arg("db_hh"), py::kw_only(),
      py::arg(variant_name) = variant_default, py::arg("reverse") = false, py::arg("dx") = py::none(),
      py::arg("input_grad") = true, py::arg("batch_sizes") = py::none(), py::arg("rd_mask") = py::none(),
      py::arg("rd_masked") = py::none(), py::arg("zone_keep_h") = py::none(),
      "Backward through one forward(training=True). Accumulates into dW_*, db_* and dx (zeros when None); "
      "consumes cache. Returns (dx, dh0); dx is None (and not computed) with input_grad=False. rd_mask, rd_masked, "
      "zone_keep_h: as the forward had them.");
}

}  // namespace

void bind_single(py::module_& m) {
  bind_one_state<Gru>(m, "gru", "linear_before_reset", true, [](bool v) { return v; });
  bind_one_state<Rnn>(m, "rnn", "nonlinearity", std::string("tanh"),
                      [](const std::string& v) { return nonlinearity(v); });
  m.def("gru_cache_size", &pylstm::gru_cache_size, py::arg("T"), py::arg("N"), py::arg("H"));
  m.def("rnn_cache_size", &pylstm::rnn_cache_size, py::arg("T"), py::arg("N"), py::arg("H"));
}

}  // namespace pylstm::bind
