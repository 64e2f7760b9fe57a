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

const Int8Path& path_named(const std::string& name) {
  const Int8Kernels& k = kernels().i8;
  for (const Int8Path& p : k.paths) {
    if (!p.name) break;
    if (name.empty() || name == p.name) return p;
  }
  std::string have;
  for (const Int8Path& p : k.paths)
    if (p.name) have += (have.empty() ? "" : ", ") + std::string(p.name);
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
  for (const Int8Path& p : kernels().i8.paths)
    if (p.name) names.emplace_back(p.name);
  return names;
}

void quantize_rows_u8(std::uint8_t* q, float* scale, std::int32_t* zero, const float* a, index_t N, index_t K) {
  kernels().i8.quantize_rows_u8(q, scale, zero, a, K, N, K, K);
}

void int8_accumulate(std::int32_t* acc, const std::uint8_t* aq, const std::int32_t* zero, const std::int8_t* Wq,
                     const std::int32_t* rowsum, index_t N, index_t J, index_t K, const std::string& path) {
  check_k(K, "K");
  const Int8Path& p = path_named(path);
  const Int8Kernels& k = kernels().i8;
  const detail::Int8Panels panels = detail::int8_panels(k.lanes, 1, J, K, 0);
  // The tiles read whole dots of 4: the inputs padded to K4 columns (with zeros; the weights there are 0 anyway).
  auto packed = make_large<std::uint8_t>(static_cast<std::size_t>(panels.size));
  std::vector<float> ones(static_cast<std::size_t>(J), 1.f);
  k.pack_panels(packed.get(), panels, Wq, ones.data(), 1, J, K);
  // The packer computes the row sums from Wq; the caller's must be those same sums (reference.int8_accumulate
  // takes them as given, so the two agree only for true row sums: checked, not trusted).
  const auto* rs = at<std::int32_t>(packed.get(), panels.rowsum);
  for (index_t j = 0; j < J; ++j)
    if (rs[j] != rowsum[j])
      throw std::invalid_argument("rowsum[" + std::to_string(j) + "] is not the sum of Wq's row " + std::to_string(j));
  std::vector<std::uint8_t> padded(static_cast<std::size_t>(N * panels.K4), 0);
  for (index_t n = 0; n < N; ++n) std::memcpy(padded.data() + n * panels.K4, aq + n * K, static_cast<std::size_t>(K));
  p.accumulate(acc, padded.data(), panels.K4, zero, packed.get(), N, J, K);
}

index_t lstm_int8_packed_bytes(index_t I, index_t H) {
  return detail::int8_lstm_layout(kMaxLanes, I, H).size + 64;
}

void lstm_int8_pack(std::uint8_t* buf, const std::int8_t* Wq_ih, const float* s_ih, const std::int8_t* Wq_hh,
                    const float* s_hh, const float* b_ih, const float* b_hh, index_t I, index_t H) {
  check_k(I, "input_size");
  check_k(H, "hidden_size");
  const Int8Kernels& k = kernels().i8;
  const index_t L = k.lanes;
  const detail::Int8LstmLayout lay = detail::int8_lstm_layout(L, I, H);
  std::uint8_t* base = detail::align64(buf);
  k.pack_panels(base, lay.hh, Wq_hh, s_hh, 4, H, H);
  k.pack_panels(base, lay.ih, Wq_ih, s_ih, 4, H, I);
  float* bias = at<float>(base, lay.bias);
  for (index_t b = 0; b < lay.hh.blocks; ++b)
    for (index_t g = 0; g < 4; ++g)
      for (index_t l = 0; l < L; ++l) {
        const index_t u = b * L + l, j = g * H + u;
        bias[(b * 4 + g) * L + l] = u < H && b_ih ? b_ih[j] + b_hh[j] : 0.f;
      }
}

void lstm_int8_forward(const std::uint8_t* buf, const float* x, const float* h0, const float* c0, float* y,
                       index_t ldy, float* h_n, float* c_n, const float* peep, index_t T, index_t N, index_t I,
                       index_t H, Run run, const std::string& path) {
  const Int8Path& p = path_named(path);
  const index_t L = kernels().i8.lanes;
  const detail::Int8LstmLayout lay = detail::int8_lstm_layout(L, I, H);
  const int parts = get_num_threads();
  const index_t ldq = lay.ih.K4 + lay.hh.K4, blocks = lay.hh.blocks, Hp = blocks * L;
  // The state padded to whole unit blocks (zeros in the padding), and the peepholes as [blocks][3][L].
  auto hbuf = make_large<float>(static_cast<std::size_t>(2 * N * Hp));
  auto c = make_large<float>(static_cast<std::size_t>(N * Hp));
  std::memset(hbuf.get(), 0, static_cast<std::size_t>(2 * N * Hp) * sizeof(float));
  std::memset(c.get(), 0, static_cast<std::size_t>(N * Hp) * sizeof(float));
  for (index_t n = 0; n < N; ++n) {
    if (h0) std::memcpy(hbuf.get() + n * Hp, h0 + n * H, static_cast<std::size_t>(H) * sizeof(float));
    if (c0) std::memcpy(c.get() + n * Hp, c0 + n * H, static_cast<std::size_t>(H) * sizeof(float));
  }
  std::vector<float> pp(static_cast<std::size_t>(blocks * 3 * L), 0.f);
  if (peep)
    for (index_t b = 0; b < blocks; ++b)
      for (index_t g = 0; g < 3; ++g)
        for (index_t l = 0; l < L && b * L + l < H; ++l) pp[(b * 3 + g) * L + l] = peep[g * H + b * L + l];
  auto q = make_large<std::uint8_t>(static_cast<std::size_t>(parts * N * ldq));
  std::memset(q.get(), 0, static_cast<std::size_t>(parts * N * ldq));  // the padding columns, read as dots of 4
  std::vector<float> qscale(static_cast<std::size_t>(parts * 2 * N));
  std::vector<std::int32_t> qzero(static_cast<std::size_t>(parts * 2 * N));
  detail::Int8Lstm F{};
  F.y = y, F.ldy = ldy, F.hbuf = hbuf.get(), F.c = c.get(), F.q = q.get(), F.qscale = qscale.data();
  F.qzero = qzero.data(), F.packed = detail::align64(buf), F.x = x, F.peep = pp.data();
  F.batch_sizes = run.batch_sizes, F.T = T, F.N = N, F.I = I, F.H = H, F.parts = parts, F.reverse = run.reverse;
  const auto loop = p.lstm_loop;
  parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, 2.0 * N * 4 * H * (I + H) / 4);
  const float* hl = hbuf.get() + (T % 2) * N * Hp;
  for (index_t n = 0; n < N; ++n) {
    std::memcpy(h_n + n * H, hl + n * Hp, static_cast<std::size_t>(H) * sizeof(float));
    std::memcpy(c_n + n * H, c.get() + n * Hp, static_cast<std::size_t>(H) * sizeof(float));
  }
}

}  // namespace pylstm
