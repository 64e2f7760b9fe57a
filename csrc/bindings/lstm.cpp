// The LSTM's bindings: lstm_forward, lstm_backward, the packed weights kept between calls and the streaming step.
#include "bindings/args.h"
#include "lstm.h"

namespace pylstm::bind {

namespace {

// The LSTM's sizes: H from W_hh [4H][P] and P (the width of h: proj_size, or H) from W_hr [P][H] when given.
struct LstmSizes {
  index_t T, N, I, H, P;
};
inline LstmSizes lstm_sizes(const py::array& x, const py::array& W_hh, const py::object& W_hr) {
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


// The layer norm's four arrays (γ_ih, γ_hh [4H], γ_c, β_c [H]) from `obj`, a sequence of four arrays, or None.
template <class Real>
struct LnArgs {
  Arg<Real> ih, hh, c, c_bias;
  bool on() const { return ih.ptr != nullptr; }
};
template <class Real>
LnArgs<Real> ln_args(const py::object& obj, const char* name, index_t H, bool writable) {
  LnArgs<Real> r;
  if (obj.is_none()) return r;
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj) || py::len(obj) != 4)
    throw py::type_error(std::string(name) + " must be a sequence of four arrays (weight_ih, weight_hh, weight_c, "
                         "bias_c of the layer norm) or None");
  const auto seq = py::reinterpret_borrow<py::sequence>(obj);
  static const char* const names[2][4] = {{"ln[0] (ln_weight_ih)", "ln[1] (ln_weight_hh)", "ln[2] (ln_weight_c)",
                                           "ln[3] (ln_bias_c)"},
                                          {"dln[0] (ln_weight_ih)", "dln[1] (ln_weight_hh)", "dln[2] (ln_weight_c)",
                                           "dln[3] (ln_bias_c)"}};
  const int k = writable ? 1 : 0;
  const index_t GH = pylstm::kLstmGates * H;
  r.ih = arg<Real>(seq[0], names[k][0], {GH}, writable);
  r.hh = arg<Real>(seq[1], names[k][1], {GH}, writable);
  r.c = arg<Real>(seq[2], names[k][2], {H}, writable);
  r.c_bias = arg<Real>(seq[3], names[k][3], {H}, writable);
  return r;
}

// A float32 LSTM layer direction's packed weights, kept by the Python layer between calls (see LstmPacked).
struct PackedLstm {
  index_t I, H;
  pylstm::LargeBuffer<float> data;
  bool ready = false;
  unsigned steps = 0;  // streaming steps run from this pack (first layer): their order of unit blocks alternates
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
                         py::object y_, py::object packed_, py::object batch_sizes_, py::object peep_,
                         py::object rd_mask_, py::object rd_masked_, py::object zk_c_, py::object zk_h_, double z_c,
                         double z_h, py::object ln_, py::object cache_) {
  const auto [T, N, I, H, P] = lstm_sizes(x_, W_hh_, W_hr_);
  const index_t GH = pylstm::kLstmGates * H;
  auto x = arg<Real>(x_, "x", {T, N, I});
  auto peep = arg<Real>(peep_, "peep", {3 * H}, false, true);
  if (peep.ptr && !W_hr_.is_none()) throw py::value_error("peep (peepholes) and W_hr (a projection) cannot be combined");
  auto h0 = arg<Real>(h0_, "h0", {N, P}, false, true);
  auto c0 = arg<Real>(c0_, "c0", {N, H}, false, true);
  auto W_ih = arg<Real>(W_ih_, "W_ih", {GH, I});
  auto W_hh = arg<Real>(W_hh_, "W_hh", {GH, P});
  auto b_ih = arg<Real>(b_ih_, "b_ih", {GH}, false, true);
  auto b_hh = arg<Real>(b_hh_, "b_hh", {GH}, false, true);
  auto W_hr = arg<Real>(W_hr_, "W_hr", {P, H}, false, true);
  both_or_neither(b_ih, b_hh);
  const auto ln = ln_args<Real>(ln_, "ln", H, false);
  if (ln.on() && (peep.ptr || W_hr.ptr))
    throw py::value_error("ln (layer norm) is not combined with peep (peepholes) or W_hr (a projection)");
  if (ln.on() && !packed_.is_none()) throw py::value_error("packed must be None with ln (layer norm)");

  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  // With variable lengths the kernel leaves y past each row's end alone: a new y starts as zeros.
  py::object y_obj = out_or_new<Real>(y_, {T, N, P}, batch_sizes != nullptr);
  auto y = arg<Real>(y_obj, "y", {T, N, P}, true, false, true);
  auto [rd_mask, rd_masked] = recurrent_dropout_args<Real>(rd_mask_, rd_masked_, T, N, P, training);
  const auto za = zoneout_args<Real>(zk_c_, zk_h_, z_c, z_h, T, N, H, 2);
  const auto zone = za.zone;
  Arg<Real> cache_arg;
  py::object cache_obj = new_cache<Real>(training, pylstm::lstm_cache_size(T, N, H, ln.on()), cache_arg, cache_);
  no_overlap<Real>({&y, &rd_masked, &cache_arg},
                   {&x, &h0, &c0, &W_ih, &W_hh, &b_ih, &b_hh, &W_hr, &peep, &rd_mask, &y, &rd_masked, &za.keep_c,
                    &za.keep_h, &ln.ih, &ln.hh, &ln.c, &ln.c_bias, &cache_arg});
  py::array_t<Real> h_n = new_array<Real>({N, P}), c_n = new_array<Real>({N, H});
  Real* const cache = cache_arg.ptr;
  auto work = workspace<Real>(
      pylstm::lstm_workspace_size(training ? Pass::TrainingForward : Pass::Inference, T, N, I, H, P, ln.on()));
  PackedLstm* pk = nullptr;
  pylstm::LstmPacked keep{nullptr, false};
  if (!packed_.is_none()) {
    pk = &packed_for(packed_, I, H);
    if constexpr (std::is_same_v<Real, float>) keep = {pk->data.get(), pk->ready};
    pk->ready = false;  // until the call has succeeded
  }
  const pylstm::Dims d{T, N, I, H, P};
  const pylstm::Weights<Real> w{W_ih.ptr, W_hh.ptr, b_ih.ptr, b_hh.ptr, W_hr.ptr, peep.ptr,
                                ln.ih.ptr, ln.hh.ptr, ln.c.ptr, ln.c_bias.ptr};
  const pylstm::Run run{reverse, batch_sizes};
  Real *hn = h_n.mutable_data(), *cn = c_n.mutable_data(), *wk = work.get();
  pylstm::LstmPacked* kp = keep.data ? &keep : nullptr;
  const pylstm::RecurrentDropout<Real> rd{rd_mask.ptr, rd_masked.ptr};
  without_gil([=] {
    pylstm::lstm_forward<Real>(d, w, x.ptr, h0.ptr, c0.ptr, y.ptr, y.ld, hn, cn, cache, wk, run, kp, rd, zone);
  });
  if (pk) pk->ready = keep.ready;
  return py::make_tuple(y_obj, h_n, c_n, cache_obj);
}

template <class Real>
py::tuple lstm_backward_t(py::object dy_, py::object dh_n_, py::object dc_n_, py::array x_, py::object h0_,
                          py::object c0_, py::array W_ih_, py::array W_hh_, py::object y_, py::object cache_,
                          py::object dW_ih_, py::object dW_hh_, py::object db_ih_, py::object db_hh_,
                          py::object W_hr_, py::object dW_hr_, bool reverse, py::object dx_, bool input_grad,
                          py::object batch_sizes_, py::object peep_, py::object dpeep_, py::object rd_mask_,
                          py::object rd_masked_, py::object zk_c_, py::object zk_h_, py::object ln_,
                          py::object dln_) {
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
  const auto ln = ln_args<Real>(ln_, "ln", H, false);
  const auto dln = ln_args<Real>(dln_, "dln", H, true);
  if (ln.on() != dln.on()) throw py::value_error("ln and dln (layer norm and its gradients): both or neither");
  auto cache = arg<Real>(cache_, "cache", {pylstm::lstm_cache_size(T, N, H, ln.on())}, true);
  auto dW_ih = arg<Real>(dW_ih_, "dW_ih", {GH, I}, true);
  auto dW_hh = arg<Real>(dW_hh_, "dW_hh", {GH, P}, true);
  auto db_ih = arg<Real>(db_ih_, "db_ih", {GH}, true, true);
  auto db_hh = arg<Real>(db_hh_, "db_hh", {GH}, true, true);
  auto dW_hr = arg<Real>(dW_hr_, "dW_hr", {P, H}, true, true);
  both_or_neither(db_ih, db_hh);
  both_or_neither(W_hr, dW_hr);
  auto peep = arg<Real>(peep_, "peep", {3 * H}, false, true);
  auto dpeep = arg<Real>(dpeep_, "dpeep", {3 * H}, true, true);
  both_or_neither(peep, dpeep);
  if (peep.ptr && W_hr.ptr) throw py::value_error("peep (peepholes) and W_hr (a projection) cannot be combined");
  if (ln.on() && (peep.ptr || W_hr.ptr))
    throw py::value_error("ln (layer norm) is not combined with peep (peepholes) or W_hr (a projection)");

  // Without input_grad, ∂L/∂x is not computed (as torch skips it for an input that does not require a gradient).
  if (!input_grad && !dx_.is_none()) throw py::value_error("dx must be None when input_grad is False");
  py::object dx_obj = input_grad ? out_or_new<Real>(dx_, {T, N, I}, true) : py::none();
  auto dx = input_grad ? arg<Real>(dx_obj, "dx", {T, N, I}, true) : Arg<Real>{};
  auto [rd_mask, rd_masked] = recurrent_dropout_args<Real>(rd_mask_, rd_masked_, T, N, P, true);
  const auto za = zoneout_args<Real>(zk_c_, zk_h_, 0.0, 0.0, T, N, H, 2);
  const auto zone = za.zone;
  no_overlap<Real>({&dx, &cache, &dW_ih, &dW_hh, &db_ih, &db_hh, &dW_hr, &dpeep},
                   {&dx, &dy, &dh_n, &dc_n, &x, &h0, &c0, &W_ih, &W_hh, &W_hr, &y, &cache, &dW_ih, &dW_hh, &db_ih,
                    &db_hh, &dW_hr, &peep, &dpeep, &rd_mask, &rd_masked, &za.keep_c, &za.keep_h, &ln.ih, &ln.hh,
                    &ln.c, &ln.c_bias, &dln.ih, &dln.hh, &dln.c, &dln.c_bias});
  no_overlap<Real>({&dln.ih, &dln.hh, &dln.c, &dln.c_bias},
                   {&dx, &dy, &dh_n, &dc_n, &x, &h0, &c0, &W_ih, &W_hh, &y, &cache, &dW_ih, &dW_hh, &db_ih, &db_hh,
                    &rd_mask, &rd_masked, &za.keep_c, &za.keep_h, &ln.ih, &ln.hh, &ln.c, &ln.c_bias, &dln.ih,
                    &dln.hh, &dln.c, &dln.c_bias});
  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  py::array_t<Real> dh0 = new_array<Real>({N, P}), dc0 = new_array<Real>({N, H});
  // (ordinary pages: the row split's copy of W_hh by column groups ran slower in huge ones; memory.h, Pages)
  auto work = workspace<Real>(pylstm::lstm_workspace_size(Pass::Backward, T, N, I, H, P, ln.on()),
                              pylstm::Pages::Small);
  const pylstm::Dims d{T, N, I, H, P};
  const pylstm::Weights<Real> w{W_ih.ptr, W_hh.ptr, nullptr, nullptr, W_hr.ptr, peep.ptr,
                                ln.ih.ptr, ln.hh.ptr, ln.c.ptr, ln.c_bias.ptr};
  const pylstm::Grads<Real> g{dW_ih.ptr, dW_hh.ptr, db_ih.ptr, db_hh.ptr, dW_hr.ptr, dpeep.ptr,
                              dln.ih.ptr, dln.hh.ptr, dln.c.ptr, dln.c_bias.ptr};
  const pylstm::Recorded<Real> fwd{x.ptr, y.ptr, y.ld, h0.ptr, c0.ptr};
  const pylstm::OutputGrads<Real> out{dy.ptr, dy.ld, dh_n.ptr, dc_n.ptr};
  const pylstm::Run run{reverse, batch_sizes};
  Real *d_h0 = dh0.mutable_data(), *d_c0 = dc0.mutable_data(), *wk = work.get();
  const pylstm::RecurrentDropout<Real> rd{rd_mask.ptr, rd_masked.ptr};
  without_gil([=] {
    pylstm::lstm_backward<Real>(d, w, g, fwd, out, dx.ptr, d_h0, d_c0, cache.ptr, wk, run, rd, zone);
  });
  return py::make_tuple(dx_obj, dh0, dc0);
}


}  // namespace

void bind_lstm(py::module_& m) {
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
         py::object peep, py::object rd_mask, py::object rd_masked, py::object zone_keep_c, py::object zone_keep_h,
         double zone_c, double zone_h, py::object ln, py::object cache) {
        return with_real(x, [&](auto real) {
          return lstm_forward_t<decltype(real)>(x, h0, c0, W_ih, W_hh, b_ih, b_hh, W_hr, reverse, training, y,
                                                packed, batch_sizes, peep, rd_mask, rd_masked, zone_keep_c,
                                                zone_keep_h, zone_c, zone_h, ln, cache);
        });
      },
      py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("W_ih"), py::arg("W_hh"), py::arg("b_ih"), py::arg("b_hh"),
      py::kw_only(), py::arg("W_hr") = py::none(), py::arg("reverse") = false, py::arg("training") = true,
      py::arg("y") = py::none(), py::arg("packed") = py::none(), py::arg("batch_sizes") = py::none(),
      py::arg("peep") = py::none(), py::arg("rd_mask") = py::none(), py::arg("rd_masked") = py::none(),
      py::arg("zone_keep_c") = py::none(), py::arg("zone_keep_h") = py::none(), py::arg("zone_c") = 0.0,
      py::arg("zone_h") = 0.0, py::arg("ln") = py::none(), py::arg("cache") = py::none(),
      "One LSTM layer direction over a sequence. Returns (y, h_n, c_n, cache); cache is None unless training. "
      "packed: a PackedLstm that the float32 loop without projection reuses when ready (the caller guarantees "
      "the weights are those it was packed from) and packs into otherwise. peep: peephole weights (3H,) = p_i, p_f, "
      "p_o, or None. rd_mask (N, P) and rd_masked (T + 1, N, P), training only: recurrent dropout (the recurrent "
      "product reads rd_mask * h_{t-1}); rd_masked receives the masked states, for the backward. zone_keep_c, zone_keep_h "
      "(T, N, H), 0 or 1, training: zoneout (c_t = d * c_{t-1} + (1 - d) * the new c, h likewise); zone_c, zone_h: "
      "their expectation in inference. ln: the layer norm's (weight_ih (4H,), weight_hh (4H,), weight_c (H,), "
      "bias_c (H,)), or None; its cache has lstm_cache_size(T, N, H, layer_norm=True) elements. cache, training "
      "only: an array of that many elements to fill (a consumed cache of an earlier call), or None for a new one.");

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
        packed.ready = false;
        float *data = packed.data.get(), *wk = work.get();
        packed.ready = without_gil([=] {
          pylstm::LstmPacked keep{data, false};
          pylstm::lstm_pack(keep, wk, W_ih.ptr, W_hh.ptr, b_ih.ptr, b_hh.ptr, I, H);
          return keep.ready;
        });
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
        float* wk = work.get();
        const float* const* pk = packed.data();
        const bool descending = packs[0]->steps++ & 1u;  // under the GIL (lstm.h, lstm_stream_step)
        without_gil([=] {
          pylstm::lstm_stream_step(h_new.ptr, c.ptr, wk, x.ptr, h_prev.ptr, pk, L, N, I0, H, descending);
        });
      },
      py::arg("x"), py::arg("h_prev"), py::arg("h_new"), py::arg("c"), py::arg("packs"),
      "One inference step of a stack of float32 LSTM layers without projection, from packed weights: reads x "
      "(N, I) and h_prev (L, N, H), writes h_new (L, N, H) and updates c (L, N, H) in place.");

  m.def(
      "lstm_backward",
      [](py::object dy, py::object dh_n, py::object dc_n, py::array x, py::object h0, py::object c0, py::array W_ih,
         py::array W_hh, py::object y, py::object cache, py::object dW_ih, py::object dW_hh, py::object db_ih,
         py::object db_hh, py::object W_hr, py::object dW_hr, bool reverse, py::object dx, bool input_grad,
         py::object batch_sizes, py::object peep, py::object dpeep, py::object rd_mask, py::object rd_masked,
         py::object zone_keep_c, py::object zone_keep_h, py::object ln, py::object dln) {
        return with_real(x, [&](auto real) {
          return lstm_backward_t<decltype(real)>(dy, dh_n, dc_n, x, h0, c0, W_ih, W_hh, y, cache, dW_ih, dW_hh, db_ih,
                                                 db_hh, W_hr, dW_hr, reverse, dx, input_grad, batch_sizes, peep, dpeep,
                                                 rd_mask, rd_masked, zone_keep_c, zone_keep_h, ln, dln);
        });
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("W_ih"),
      py::arg("W_hh"), py::arg("y"), py::arg("cache"), py::arg("dW_ih"), py::arg("dW_hh"), py::arg("db_ih"),
      py::arg("db_hh"), py::kw_only(), py::arg("W_hr") = py::none(), py::arg("dW_hr") = py::none(),
      py::arg("reverse") = false, py::arg("dx") = py::none(), py::arg("input_grad") = true,
      py::arg("batch_sizes") = py::none(), py::arg("peep") = py::none(), py::arg("dpeep") = py::none(),
      py::arg("rd_mask") = py::none(), py::arg("rd_masked") = py::none(), py::arg("zone_keep_c") = py::none(),
      py::arg("zone_keep_h") = py::none(), py::arg("ln") = py::none(), py::arg("dln") = py::none(),
      "Backward through one lstm_forward(training=True). Accumulates into dW_*, db_*, dpeep and dx (allocated as "
      "zeros when None); consumes cache. Returns (dx, dh0, dc0); dx is None (and not computed) with "
      "input_grad=False. peep and dpeep (peepholes): both or neither. rd_mask, rd_masked, zone_keep_c, zone_keep_h: as "
      "the forward had them. ln, dln: the layer norm's parameters, as the forward had them, and their gradients "
      "(four arrays, accumulated), both or neither.");
  m.def("_lstm_projection_block_steps", &pylstm::lstm_projection_block_steps, py::arg("split"), py::arg("T"),
        py::arg("N"), py::arg("I"), py::arg("H"),
        "How many steps' input projections an inference call computes per block, split by 'rows' or 'units'.");
  m.def("lstm_cache_size", &pylstm::lstm_cache_size, py::arg("T"), py::arg("N"), py::arg("H"), py::kw_only(),
        py::arg("layer_norm") = false);
}

}  // namespace pylstm::bind
