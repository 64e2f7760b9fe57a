// The bindings of the int8 products (int8.h): checked against reference.py's int8 section by tests/test_int8_kernels.py.
#include "bindings/args.h"
#include "int8.h"

namespace pylstm::bind {

namespace {

py::tuple quantize_rows_u8_b(const py::array& a_) {
  if (a_.ndim() != 2) throw py::value_error("a must have shape (N, K), got " + shape_of(a_));
  const index_t N = a_.shape(0), K = a_.shape(1);
  auto a = arg<float>(a_, "a", {N, K});
  py::array_t<std::uint8_t> q(std::vector<py::ssize_t>{static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(K)});
  py::array_t<float> scale(static_cast<py::ssize_t>(N));
  py::array_t<std::int32_t> zero(static_cast<py::ssize_t>(N));
  std::uint8_t* qp = q.mutable_data();
  float* sp = scale.mutable_data();
  std::int32_t* zp = zero.mutable_data();
  const float* ap = a.ptr;
  without_gil([=] { pylstm::quantize_rows_u8(qp, sp, zp, ap, N, K); });
  return py::make_tuple(q, scale, zero);
}

py::array_t<std::int32_t> int8_accumulate_b(const py::array& aq_, const py::array& zero_, const py::array& Wq_,
                                             const py::array& rowsum_) {
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
  py::array_t<std::int32_t> acc(std::vector<py::ssize_t>{static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(J)});
  std::int32_t* accp = acc.mutable_data();
  const std::uint8_t* a = aq.ptr;
  const std::int32_t* z = zero.ptr;
  const std::int8_t* w = Wq.ptr;
  const std::int32_t* r = rowsum.ptr;
  without_gil([=] { pylstm::int8_accumulate(accp, a, z, w, r, N, J, K); });
  return acc;
}

}  // namespace

void bind_int8(py::module_& m) {
  m.def("quantize_rows_u8", &quantize_rows_u8_b, py::arg("a"),
        "(q uint8 (N, K), scale float32 (N,), zero int32 (N,)) of a float32 (N, K): reference.quantize_rows_u8.");
  m.def("int8_accumulate", &int8_accumulate_b, py::arg("aq"), py::arg("zero"), py::arg("Wq"), py::arg("rowsum"),
        "acc int32 (N, J) = aq Wqᵀ − zero · rowsum, exactly: reference.int8_accumulate.");
}

}  // namespace pylstm::bind
