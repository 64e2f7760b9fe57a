// The bindings of the int8 products (int8.h): checked against reference.py's int8 section by tests/test_int8_kernels.py.
#include "bindings/args.h"
#include "int8.h"

#include <algorithm>
#include <utility>

namespace pylstm::bind {

namespace {

py::tuple quantize_rows_u8_b(const py::array& a_) {
  if (a_.ndim() != 2) throw py::value_error("a must have shape (N, K), got " + shape_of(a_));
  const index_t N = a_.shape(0), K = a_.shape(1);
  auto a = arg<float>(a_, "a", {N, K});
  py::array_t<std::uint8_t> q = new_array<std::uint8_t>({N, K});
  py::array_t<float> scale = new_array<float>({N});
  py::array_t<std::int32_t> zero = new_array<std::int32_t>({N});
  std::uint8_t* qp = q.mutable_data();
  float* sp = scale.mutable_data();
  std::int32_t* zp = zero.mutable_data();
  const float* ap = a.ptr;
  without_gil([=] { pylstm::quantize_rows_u8(qp, sp, zp, ap, N, K); });
  return py::make_tuple(q, scale, zero);
}

py::array_t<std::int32_t> int8_accumulate_b(const py::array& aq_, const py::array& zero_, const py::array& Wq_,
                                             const py::array& rowsum_, const std::string& path) {
  if (aq_.ndim() != 2) throw py::value_error("aq must have shape (N, K), got " + shape_of(aq_));
  if (Wq_.ndim() != 2) throw py::value_error("Wq must have shape (J, K), got " + shape_of(Wq_));
  const index_t N = aq_.shape(0), K = aq_.shape(1), J = Wq_.shape(0);
  auto aq = arg<std::uint8_t>(aq_, "aq", {N, K});
  auto zero = arg<std::int32_t>(zero_, "zero", {N});
  auto Wq = arg<std::int8_t>(Wq_, "Wq", {J, K});
  auto rowsum = arg<std::int32_t>(rowsum_, "rowsum", {J});
  if (K > kInt8MaxK)
    throw py::value_error("an int8 product's reduction must be at most " + std::to_string(kInt8MaxK) +
                          " long, got " + std::to_string(K));
  py::array_t<std::int32_t> acc = new_array<std::int32_t>({N, J});
  std::int32_t* accp = acc.mutable_data();
  const std::uint8_t* a = aq.ptr;
  const std::int32_t* z = zero.ptr;
  const std::int8_t* w = Wq.ptr;
  const std::int32_t* r = rowsum.ptr;
  const auto paths = pylstm::int8_paths();
  if (!path.empty() && std::find(paths.begin(), paths.end(), path) == paths.end())
    throw py::value_error("path must be one of this level's int8 paths " + py::str(py::cast(paths)).cast<std::string>() +
                          ", got '" + path + "'");
  // The core checks the row sums against Wq (std::invalid_argument, which pybind11 raises as ValueError).
  const std::string* pp = &path;
  without_gil([=] { pylstm::int8_accumulate(accp, a, z, w, r, N, J, K, *pp); });
  return acc;
}

using pylstm::detail::LowpCell;

LowpCell cell_named(const std::string& name) {
  if (name == "lstm") return LowpCell::Lstm;
  if (name == "lstm_proj") return LowpCell::LstmProj;
  if (name == "gru") return LowpCell::GruLbr;
  if (name == "gru_orig") return LowpCell::GruOrig;
  if (name == "rnn_tanh") return LowpCell::RnnTanh;
  if (name == "rnn_relu") return LowpCell::RnnRelu;
  if (name == "rnn_sigmoid") return LowpCell::RnnSigmoid;
  throw py::value_error("cell must be 'lstm', 'lstm_proj', 'gru', 'gru_orig', 'rnn_tanh', 'rnn_relu' or "
                        "'rnn_sigmoid', got '" + name + "'");
}

// One low-precision layer direction's packed weights (int8.h: lowp_pack_int8, lowp_pack_bf16), made once.
struct PackedLowp {
  bool bf16;
  LowpCell cell;
  std::string cell_name;
  index_t I, H, P;
  pylstm::LargeBuffer<std::uint8_t> data;
  PackedLowp(bool bf16_, const std::string& cell_, index_t I_, index_t H_, index_t P_)
      : bf16(bf16_), cell(cell_named(cell_)), cell_name(cell_), I(I_), H(H_), P(P_),
        data(pylstm::make_large<std::uint8_t>(pylstm::lowp_packed_bytes(bf16_, cell, I_, H_, P_))) {}
};

struct LowpSizes {
  index_t I, H, P;
};

// I, H and P from W_ih [V·H][I], W_hh [V·H][P] and, for lstm_proj, W_hr [P][H] (named wi, wh, wr in the messages).
LowpSizes sizes_of(LowpCell cell, const py::array& W_ih, const py::array& W_hh, const py::object& W_hr,
                   const char* wi, const char* wh, const char* wr) {
  const index_t V = pylstm::detail::lowp_gates(cell);
  const bool proj = cell == LowpCell::LstmProj;
  if (proj != !W_hr.is_none())
    throw py::value_error(std::string(wr) + " (the projection) is required for cell 'lstm_proj' and only for it");
  if (W_hh.ndim() != 2 || W_hh.shape(0) % V || W_hh.shape(1) < 1 || (!proj && W_hh.shape(0) != V * W_hh.shape(1)))
    throw py::value_error(std::string(wh) + " must have shape (" + std::to_string(V) + "*H, " +
                          (proj ? "P" : "H") + "), got " + shape_of(W_hh));
  if (W_ih.ndim() != 2 || W_ih.shape(1) < 1 || W_ih.shape(0) != W_hh.shape(0))
    throw py::value_error(std::string(wi) + " must have shape (" + std::to_string(V) + "*H, I), got " + shape_of(W_ih));
  const index_t H = W_hh.shape(0) / V, I = W_ih.shape(1), P = W_hh.shape(1);
  if (proj && !(P < H)) throw py::value_error(std::string(wh) + " has P = " + std::to_string(P) + " columns: P < H");
  if (I > pylstm::kInt8MaxK || H > pylstm::kInt8MaxK)
    throw py::value_error("low-precision products need input_size and hidden_size at most " +
                          std::to_string(pylstm::kInt8MaxK) + ", got " + std::to_string(I) + " and " + std::to_string(H));
  return {I, H, P};
}

std::unique_ptr<PackedLowp> pack_int8(const std::string& cell_, const py::array& Wq_ih_, const py::array& s_ih_,
                                      const py::array& Wq_hh_, const py::array& s_hh_, const py::object& b_ih_,
                                      const py::object& b_hh_, const py::object& peep_, const py::object& Wq_hr_,
                                      const py::object& s_hr_) {
  const LowpCell cell = cell_named(cell_);
  const index_t V = pylstm::detail::lowp_gates(cell);
  const auto [I, H, P] = sizes_of(cell, Wq_ih_, Wq_hh_, Wq_hr_, "Wq_ih", "Wq_hh", "Wq_hr");
  auto Wq_ih = arg<std::int8_t>(Wq_ih_, "Wq_ih", {V * H, I});
  auto Wq_hh = arg<std::int8_t>(Wq_hh_, "Wq_hh", {V * H, P});
  const bool proj = cell == LowpCell::LstmProj;
  auto Wq_hr = arg<std::int8_t>(Wq_hr_, "Wq_hr", {P, H}, false, !proj);
  auto s_hr = arg<float>(s_hr_, "s_hr", {P}, false, !proj);
  auto s_ih = arg<float>(s_ih_, "s_ih", {V * H});
  auto s_hh = arg<float>(s_hh_, "s_hh", {V * H});
  auto b_ih = arg<float>(b_ih_, "b_ih", {V * H}, false, true);
  auto b_hh = arg<float>(b_hh_, "b_hh", {V * H}, false, true);
  both_or_neither(b_ih, b_hh);
  if (!peep_.is_none() && cell != LowpCell::Lstm) throw py::value_error("peep (peepholes) is for the LSTM only");
  auto peep = arg<float>(peep_, "peep", {3 * H}, false, true);
  auto pk = std::make_unique<PackedLowp>(false, cell_, I, H, P);
  std::uint8_t* buf = pk->data.get();
  without_gil([=] {
    pylstm::lowp_pack_int8(cell, buf, Wq_ih.ptr, s_ih.ptr, Wq_hh.ptr, s_hh.ptr, b_ih.ptr, b_hh.ptr, peep.ptr, Wq_hr.ptr,
                           s_hr.ptr, I, H, P);
  });
  return pk;
}

std::unique_ptr<PackedLowp> pack_bf16(const std::string& cell_, const py::array& W_ih_, const py::array& W_hh_,
                                      const py::object& b_ih_, const py::object& b_hh_, const py::object& peep_,
                                      const py::object& W_hr_) {
  const LowpCell cell = cell_named(cell_);
  const index_t V = pylstm::detail::lowp_gates(cell);
  const auto [I, H, P] = sizes_of(cell, W_ih_, W_hh_, W_hr_, "W_ih", "W_hh", "W_hr");
  if (pylstm::bf16_path().empty())
    throw py::value_error("no bfloat16 products at this level: they need a CPU with AVX512_BF16 and the avx512 level "
                          "(pylstm.config()['bf16'])");
  auto W_ih = arg<float>(W_ih_, "W_ih", {V * H, I});
  auto W_hh = arg<float>(W_hh_, "W_hh", {V * H, P});
  auto W_hr = arg<float>(W_hr_, "W_hr", {P, H}, false, cell != LowpCell::LstmProj);
  auto b_ih = arg<float>(b_ih_, "b_ih", {V * H}, false, true);
  auto b_hh = arg<float>(b_hh_, "b_hh", {V * H}, false, true);
  both_or_neither(b_ih, b_hh);
  if (!peep_.is_none() && cell != LowpCell::Lstm) throw py::value_error("peep (peepholes) is for the LSTM only");
  auto peep = arg<float>(peep_, "peep", {3 * H}, false, true);
  auto pk = std::make_unique<PackedLowp>(true, cell_, I, H, P);
  std::uint8_t* buf = pk->data.get();
  without_gil([=] {
    pylstm::lowp_pack_bf16(cell, buf, W_ih.ptr, W_hh.ptr, b_ih.ptr, b_hh.ptr, peep.ptr, W_hr.ptr, I, H, P);
  });
  return pk;
}

const PackedLowp& packed_of(const py::object& obj) {
  if (!py::isinstance<PackedLowp>(obj))
    throw py::type_error("packed must be a PackedLowp, got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
  return obj.cast<const PackedLowp&>();
}

py::tuple lowp_forward_b(const py::array& x_, const py::object& h0_, const py::object& c0_, const py::object& packed_,
                         bool reverse, const py::object& y_, const py::object& batch_sizes_, const std::string& path) {
  const auto& pk = packed_of(packed_);
  const bool lstm = pk.cell == LowpCell::Lstm || pk.cell == LowpCell::LstmProj;
  if (x_.ndim() != 3) throw py::value_error("x must be 3-D (T, N, I), got shape " + shape_of(x_));
  const index_t T = x_.shape(0), N = x_.shape(1), I = pk.I, H = pk.H, P = pk.P;
  if (T < 1 || N < 1) throw py::value_error("x must have no zero-sized axis, got shape " + shape_of(x_));
  check_footprint(T, N, I, pylstm::detail::lowp_gates(pk.cell) * H, H, 4);
  auto x = arg<float>(x_, "x", {T, N, I});
  auto h0 = arg<float>(h0_, "h0", {N, P}, false, true);
  if (!lstm && !c0_.is_none()) throw py::value_error("c0 is for the LSTM only");
  auto c0 = arg<float>(c0_, "c0", {N, H}, false, true);
  const index_t* batch_sizes = batch_sizes_arg(batch_sizes_, T, N);
  py::object y_obj = out_or_new<float>(y_, {T, N, P}, batch_sizes != nullptr);
  auto y = arg<float>(y_obj, "y", {T, N, P}, true, false, true);
  no_overlap<float>({&y}, {&x, &h0, &c0});
  if (!path.empty()) {
    const auto paths = pk.bf16 ? std::vector<std::string>{pylstm::bf16_path()} : pylstm::int8_paths();
    if (std::find(paths.begin(), paths.end(), path) == paths.end())
      throw py::value_error("path must be one of this level's paths " + py::str(py::cast(paths)).cast<std::string>() +
                            ", got '" + path + "'");
  }
  py::array_t<float> h_n = new_array<float>({N, P});
  py::object c_n_obj = py::none();
  float* cn = nullptr;
  if (lstm) {
    py::array_t<float> c_n = new_array<float>({N, H});
    cn = c_n.mutable_data();
    c_n_obj = c_n;
  }
  float* hn = h_n.mutable_data();
  const std::uint8_t* buf = pk.data.get();
  const bool bf16 = pk.bf16;
  const LowpCell cell = pk.cell;
  const pylstm::Run run{reverse, batch_sizes};
  const std::string* pp = &path;
  without_gil([=] {
    pylstm::lowp_forward(bf16, cell, buf, x.ptr, h0.ptr, c0.ptr, y.ptr, y.ld, hn, cn, T, N, I, H, P, run, *pp);
  });
  return py::make_tuple(y_obj, h_n, c_n_obj);
}

void lowp_stream_step_b(const py::array& x_, const py::array& h_prev_, const py::array& h_new_, const py::object& c_,
                        const std::vector<const PackedLowp*>& packs) {
  const index_t L = static_cast<index_t>(packs.size());
  if (L < 1) throw py::value_error("packs must hold one PackedLowp per layer, got none");
  for (const PackedLowp* p : packs)
    if (!p) throw py::type_error("packs must hold PackedLowp objects, got None");
  if (x_.ndim() != 2) throw py::value_error("x must have shape (N, I), got " + shape_of(x_));
  const index_t N = x_.shape(0), I0 = x_.shape(1), H = packs[0]->H;
  const bool bf16 = packs[0]->bf16;
  const LowpCell cell = packs[0]->cell;
  if (pylstm::detail::lowp_two_phases(cell))
    throw py::value_error("lowp_stream_step runs cells without a second product (not lstm_proj, gru_orig)");
  for (index_t l = 0; l < L; ++l) {
    const PackedLowp* p = packs[static_cast<size_t>(l)];
    const index_t want_I = l == 0 ? I0 : H;
    if (p->I != want_I || p->H != H)
      throw py::value_error("packs[" + std::to_string(l) + "] was made for (I, H) = (" + std::to_string(p->I) + ", " +
                            std::to_string(p->H) + "), layer " + std::to_string(l) + " needs (" +
                            std::to_string(want_I) + ", " + std::to_string(H) + ")");
    if (p->bf16 != bf16 || p->cell != cell) throw py::value_error("packs must all have one precision and one cell");
  }
  if ((cell == LowpCell::Lstm) == c_.is_none()) throw py::value_error("c is required for the LSTM and only for it");
  auto x = arg<float>(x_, "x", {N, I0});
  auto h_prev = arg<float>(h_prev_, "h_prev", {L, N, H});
  auto h_new = arg<float>(h_new_, "h_new", {L, N, H}, true);
  auto c = arg<float>(c_, "c", {L, N, H}, true, true);
  no_overlap<float>({&h_new, &c}, {&x, &h_prev, &h_new, &c});
  std::vector<const std::uint8_t*> bufs(static_cast<size_t>(L));
  for (index_t l = 0; l < L; ++l) bufs[static_cast<size_t>(l)] = packs[static_cast<size_t>(l)]->data.get();
  const std::uint8_t* const* pk = bufs.data();
  without_gil([=] { pylstm::lowp_stream_step(bf16, cell, h_new.ptr, c.ptr, x.ptr, h_prev.ptr, pk, L, N, I0, H); });
}

}  // namespace

void bind_int8(py::module_& m) {
  m.def("quantize_rows_u8", &quantize_rows_u8_b, py::arg("a"),
        "(q uint8 (N, K), scale float32 (N,), zero int32 (N,)) of a float32 (N, K): reference.quantize_rows_u8.");
  m.def("int8_accumulate", &int8_accumulate_b, py::arg("aq"), py::arg("zero"), py::arg("Wq"), py::arg("rowsum"),
        py::arg("path") = "",
        "acc int32 (N, J) = aq Wqᵀ − zero · rowsum, exactly: reference.int8_accumulate, through the packed tiles of "
        "int8 path `path` (int8_paths(); '' for the best).");
  m.def("int8_paths", &pylstm::int8_paths, "The int8 dot forms this CPU runs at the level in use, best first.");
  m.def("bf16_path", &pylstm::bf16_path, "The bfloat16 dot form at the level in use, or '' when there is none.");
  py::class_<PackedLowp>(m, "PackedLowp",
                         "One int8 or bfloat16 layer direction's weights packed for this level (pack_int8, "
                         "pack_bf16; lowp_forward).")
      .def_readonly("I", &PackedLowp::I)
      .def_readonly("H", &PackedLowp::H)
      .def_readonly("P", &PackedLowp::P)
      .def_readonly("cell", &PackedLowp::cell_name)
      .def_property_readonly("dtype", [](const PackedLowp& p) { return p.bf16 ? "bfloat16" : "int8"; });
  m.def("pack_int8", &pack_int8, py::arg("cell"), py::arg("Wq_ih"), py::arg("s_ih"), py::arg("Wq_hh"),
        py::arg("s_hh"), py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("peep") = py::none(),
        py::arg("Wq_hr") = py::none(), py::arg("s_hr") = py::none(),
        "A PackedLowp of int8 weights with their row scales (reference.quantize_weights_int8's form); cell 'lstm', "
        "'lstm_proj' (with Wq_hr, s_hr), 'gru', 'gru_orig', 'rnn_tanh', 'rnn_relu' or 'rnn_sigmoid'.");
  m.def("pack_bf16", &pack_bf16, py::arg("cell"), py::arg("W_ih"), py::arg("W_hh"), py::arg("b_ih") = py::none(),
        py::arg("b_hh") = py::none(), py::arg("peep") = py::none(), py::arg("W_hr") = py::none(),
        "A PackedLowp of float32 weights rounded to bfloat16 (reference.to_bfloat16).");
  m.def("lowp_forward", &lowp_forward_b, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("packed"), py::kw_only(),
        py::arg("reverse") = false, py::arg("y") = py::none(), py::arg("batch_sizes") = py::none(),
        py::arg("path") = "",
        "(y, h_n, c_n or None) of one int8 or bfloat16 layer direction, inference: the reference's forward with "
        "Int8Weights or Bf16Weights.");
  m.def("lowp_stream_step", &lowp_stream_step_b, py::arg("x"), py::arg("h_prev"), py::arg("h_new"), py::arg("c"),
        py::arg("packs"),
        "One inference step of a stack of int8 or bfloat16 layers: reads x (N, I) and h_prev (L, N, H), writes "
        "h_new (L, N, H) and, for the LSTM, updates c (L, N, H) in place (None otherwise).");
}

}  // namespace pylstm::bind
