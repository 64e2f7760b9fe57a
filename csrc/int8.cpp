// The int8 inference path through the kernel table (int8.h).
#include "int8.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "memory.h"
#include "parallel.h"

namespace pylstm {

namespace {

using detail::Lowp;

// The dot form named `name` ("" for the best) among the level's forms of `prec`.
const LowpPath& path_named(Lowp prec, const std::string& name) {
  const LowpKernels& k = kernels().lowp;
  const LowpPath* paths = prec == Lowp::Int8 ? k.int8 : k.bf16;
  const int count = prec == Lowp::Int8 ? 2 : 1;
  std::string have;
  for (int i = 0; i < count && paths[i].name; ++i) {
    if (name.empty() || name == paths[i].name) return paths[i];
    have += (have.empty() ? "" : ", ") + std::string(paths[i].name);
  }
  if (prec == Lowp::Bf16 && have.empty())
    throw std::invalid_argument("no bfloat16 products at this level (they need AVX512_BF16 and PYLSTM_ISA=avx512)");
  throw std::invalid_argument("unknown int8 path '" + name + "' at this level (it runs: " + have + ")");
}

void check_k(index_t K, const char* what) {
  if (K > kInt8MaxK)
    throw std::invalid_argument(std::string("an int8 product's reduction (") + what + ") must be at most " +
                                std::to_string(kInt8MaxK) + " long, got " + std::to_string(K));
}

template <typename T>
T* at(std::uint8_t* base, index_t offset) {
  return reinterpret_cast<T*>(base + offset);
}

}  // namespace

std::vector<std::string> int8_paths() {
  std::vector<std::string> names;
  for (const LowpPath& p : kernels().lowp.int8)
    if (p.name) names.emplace_back(p.name);
  return names;
}

std::string bf16_path() {
  const LowpPath& p = kernels().lowp.bf16[0];
  return p.name ? p.name : "";
}

void quantize_rows_u8(std::uint8_t* q, float* scale, std::int32_t* zero, const float* a, index_t N, index_t K) {
  kernels().lowp.quantize_rows_u8(q, scale, zero, a, K, N, K, K);
}

void int8_accumulate(std::int32_t* acc, const std::uint8_t* aq, const std::int32_t* zero, const std::int8_t* Wq,
                     const std::int32_t* rowsum, index_t N, index_t J, index_t K, const std::string& path) {
  check_k(K, "K");
  const LowpPath& p = path_named(Lowp::Int8, path);
  const LowpKernels& k = kernels().lowp;
  const detail::LowpPanels panels = detail::lowp_panels(Lowp::Int8, k.lanes, 1, J, K, 0);
  auto packed = make_large<std::uint8_t>(static_cast<std::size_t>(panels.size));
  std::vector<float> ones(static_cast<std::size_t>(J), 1.f);
  k.pack_int8(packed.get(), panels, Wq, ones.data(), 1, J, K);
  // The packer computes the row sums from Wq; the caller's must be those same sums (reference.int8_accumulate
  // takes them as given, so the two agree only for true row sums: checked, not trusted).
  const auto* rs = at<std::int32_t>(packed.get(), panels.rowsum);
  for (index_t j = 0; j < J; ++j)
    if (rs[j] != rowsum[j])
      throw std::invalid_argument("rowsum[" + std::to_string(j) + "] is not the sum of Wq's row " + std::to_string(j));
  // The tiles read whole dots of 4: the inputs padded to Kp columns (with zeros; the weights there are 0 anyway).
  std::vector<std::uint8_t> padded(static_cast<std::size_t>(N * panels.Kp), 0);
  for (index_t n = 0; n < N; ++n) std::memcpy(padded.data() + n * panels.Kp, aq + n * K, static_cast<std::size_t>(K));
  p.accumulate(acc, padded.data(), panels.Kp, zero, packed.get(), N, J, K);
}

index_t lowp_packed_bytes(bool bf16, detail::LowpCell cell, index_t I, index_t H, index_t P) {
  return detail::lowp_layout(bf16 ? Lowp::Bf16 : Lowp::Int8, cell, kMaxLanes, I, H, P).size + 64;
}

namespace {

// The float32 parts of a packed layer direction: the biases as [blocks][2][V][L] (the GRUs' b_ih and b_hh; the
// other cells' b_ih + b_hh, then zeros), and the LSTM's peepholes as [blocks][3][L].
void pack_float_parts(std::uint8_t* base, const detail::LowpLayout& lay, detail::LowpCell cell, index_t L,
                      const float* b_ih, const float* b_hh, const float* peep, index_t H) {
  const index_t V = detail::lowp_gates(cell);
  const bool apart = cell == detail::LowpCell::GruLbr || cell == detail::LowpCell::GruOrig;  // b_hn inside r ⊙ (·)
  float* bias = at<float>(base, lay.bias);
  float* pp = at<float>(base, lay.peep);
  for (index_t b = 0; b < lay.ih.blocks; ++b)
    for (index_t l = 0; l < L; ++l) {
      const index_t u = b * L + l;
      for (index_t g = 0; g < V; ++g) {
        const float bi = u < H && b_ih ? b_ih[g * H + u] : 0.f, bh = u < H && b_hh ? b_hh[g * H + u] : 0.f;
        bias[((b * 2 + 0) * V + g) * L + l] = apart ? bi : bi + bh;
        bias[((b * 2 + 1) * V + g) * L + l] = apart ? bh : 0.f;
      }
      if (cell == detail::LowpCell::Lstm)
        for (index_t g = 0; g < 3; ++g) pp[(b * 3 + g) * L + l] = u < H && peep ? peep[g * H + u] : 0.f;
    }
}

}  // namespace

void lowp_pack_int8(detail::LowpCell cell, std::uint8_t* buf, const std::int8_t* Wq_ih, const float* s_ih,
                    const std::int8_t* Wq_hh, const float* s_hh, const float* b_ih, const float* b_hh,
                    const float* peep, const std::int8_t* Wq_hr, const float* s_hr, index_t I, index_t H, index_t P) {
  check_k(I, "input_size");
  check_k(H, "hidden_size");
  const LowpKernels& k = kernels().lowp;
  const index_t L = k.lanes, V = detail::lowp_gates(cell), Vh = detail::lowp_hh_gates(cell);
  const detail::LowpLayout lay = detail::lowp_layout(Lowp::Int8, cell, L, I, H, P);
  std::uint8_t* base = detail::align64(buf);
  k.pack_int8(base, lay.hh, Wq_hh, s_hh, Vh, H, P);  // the original GRU: rows r and z of W_hh
  k.pack_int8(base, lay.ih, Wq_ih, s_ih, V, H, I);
  if (cell == detail::LowpCell::LstmProj) k.pack_int8(base, lay.p2, Wq_hr, s_hr, 1, P, H);
  if (cell == detail::LowpCell::GruOrig) k.pack_int8(base, lay.p2, Wq_hh + 2 * H * H, s_hh + 2 * H, 1, H, H);
  pack_float_parts(base, lay, cell, L, b_ih, b_hh, peep, H);
}

void lowp_pack_bf16(detail::LowpCell cell, std::uint8_t* buf, const float* W_ih, const float* W_hh, const float* b_ih,
                    const float* b_hh, const float* peep, const float* W_hr, index_t I, index_t H, index_t P) {
  path_named(Lowp::Bf16, "");  // throws where there are no bfloat16 products
  const LowpKernels& k = kernels().lowp;
  const index_t L = k.lanes, V = detail::lowp_gates(cell), Vh = detail::lowp_hh_gates(cell);
  const detail::LowpLayout lay = detail::lowp_layout(Lowp::Bf16, cell, L, I, H, P);
  std::uint8_t* base = detail::align64(buf);
  k.pack_bf16(base, lay.hh, W_hh, Vh, H, P);
  k.pack_bf16(base, lay.ih, W_ih, V, H, I);
  if (cell == detail::LowpCell::LstmProj) k.pack_bf16(base, lay.p2, W_hr, 1, P, H);
  if (cell == detail::LowpCell::GruOrig) k.pack_bf16(base, lay.p2, W_hh + 2 * H * H, 1, H, H);
  pack_float_parts(base, lay, cell, L, b_ih, b_hh, peep, H);
}

namespace {

// Each thread's converted inputs (lowp_q_bytes, zeroed: the padding columns are read as parts of dots, always
// against zero weights) and, for int8, their scales and zero points; the two-phase cells' mid [N][H] and keep
// [N][2H], shared.
struct Scratch {
  LargeBuffer<std::uint8_t> q;
  std::vector<float> scale;
  std::vector<std::int32_t> zero;
  std::vector<float> mid, keep;
  Scratch(Lowp prec, detail::LowpCell cell, int parts, index_t N, index_t I, index_t H, index_t P)
      : q(make_large<std::uint8_t>(static_cast<std::size_t>(parts * detail::lowp_q_bytes(prec, N, I, H, P)))),
        scale(static_cast<std::size_t>(parts * 3 * N)), zero(static_cast<std::size_t>(parts * 3 * N)),
        mid(detail::lowp_two_phases(cell) ? static_cast<std::size_t>(N * H) : 0),
        keep(cell == detail::LowpCell::GruOrig ? static_cast<std::size_t>(2 * N * H) : 0) {
    std::memset(q.get(), 0, static_cast<std::size_t>(parts * detail::lowp_q_bytes(prec, N, I, H, P)));
  }
  void into(detail::LowpStep& S) {
    S.q = q.get(), S.qscale = scale.data(), S.qzero = zero.data(), S.mid = mid.data(), S.keep = keep.data();
  }
};

}  // namespace

void lowp_forward(bool bf16, detail::LowpCell cell, const std::uint8_t* buf, const float* x, const float* h0,
                  const float* c0, float* y, index_t ldy, float* h_n, float* c_n, index_t T, index_t N, index_t I,
                  index_t H, index_t P, Run run, const std::string& path) {
  const Lowp prec = bf16 ? Lowp::Bf16 : Lowp::Int8;
  const LowpPath& p = path_named(prec, path);
  const int parts = get_num_threads();
  const std::size_t hbytes = static_cast<std::size_t>(N * P) * sizeof(float);
  auto hbuf = make_large<float>(static_cast<std::size_t>(2 * N * P));
  if (h0) std::memcpy(hbuf.get(), h0, hbytes);
  else std::memset(hbuf.get(), 0, hbytes);
  if (c_n) {
    const std::size_t cbytes = static_cast<std::size_t>(N * H) * sizeof(float);
    if (c0) std::memcpy(c_n, c0, cbytes);
    else std::memset(c_n, 0, cbytes);
  }
  Scratch scratch(prec, cell, parts, N, I, H, P);
  detail::LowpSequence F{};
  F.step.packed = detail::align64(buf), F.step.c = c_n, F.step.ldc = H, F.step.ldy = ldy;
  F.step.N = N, F.step.I = I, F.step.H = H, F.step.P = P, F.step.parts = parts, F.step.cell = cell;
  scratch.into(F.step);
  F.hbuf = hbuf.get(), F.x = x, F.y = y, F.batch_sizes = run.batch_sizes, F.T = T, F.reverse = run.reverse;
  const auto loop = p.sequence;
  const double V = static_cast<double>(detail::lowp_gates(cell));
  parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, 2.0 * N * V * H * (I + H) / 4);
  std::memcpy(h_n, hbuf.get() + (T % 2) * N * P, hbytes);
}

void lowp_stream_step(bool bf16, detail::LowpCell cell, float* h_new, float* c, const float* x, const float* h_prev,
                      const std::uint8_t* const* packs, index_t L, index_t N, index_t I0, index_t H) {
  const Lowp prec = bf16 ? Lowp::Bf16 : Lowp::Int8;
  const LowpPath& p = path_named(prec, "");
  const int parts = get_num_threads();
  if (detail::lowp_two_phases(cell)) throw std::invalid_argument("lowp_stream_step runs one-phase cells only");
  Scratch scratch(prec, cell, parts, N, I0 > H ? I0 : H, H, H);
  detail::LowpStream F{};
  F.step.x = x, F.step.N = N, F.step.rows = N, F.step.H = H, F.step.P = H, F.step.parts = parts, F.step.cell = cell;
  scratch.into(F.step);
  F.packs = packs, F.h_prev = h_prev, F.h_new = h_new, F.c = c, F.L = L, F.I0 = I0;
  const auto loop = p.stream;
  const double V = static_cast<double>(detail::lowp_gates(cell));
  parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, 2.0 * N * V * H * (I0 + H) / 4);
}

}  // namespace pylstm
