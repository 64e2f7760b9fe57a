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
                    const float* s_hh, const float* b_ih, const float* b_hh, const float* peep, index_t I, index_t H) {
  check_k(I, "input_size");
  check_k(H, "hidden_size");
  const Int8Kernels& k = kernels().i8;
  const index_t L = k.lanes;
  const detail::Int8LstmLayout lay = detail::int8_lstm_layout(L, I, H);
  std::uint8_t* base = detail::align64(buf);
  k.pack_panels(base, lay.hh, Wq_hh, s_hh, 4, H, H);
  k.pack_panels(base, lay.ih, Wq_ih, s_ih, 4, H, I);
  float* bias = at<float>(base, lay.bias);
  float* pp = at<float>(base, lay.peep);
  for (index_t b = 0; b < lay.hh.blocks; ++b)
    for (index_t l = 0; l < L; ++l) {
      const index_t u = b * L + l;
      for (index_t g = 0; g < 4; ++g) bias[(b * 4 + g) * L + l] = u < H && b_ih ? b_ih[g * H + u] + b_hh[g * H + u] : 0.f;
      for (index_t g = 0; g < 3; ++g) pp[(b * 3 + g) * L + l] = u < H && peep ? peep[g * H + u] : 0.f;
    }
}

namespace {

// Each thread's quantized inputs (int8_lstm_q_bytes, zeroed: the padding columns are read as parts of dots of 4,
// always against zero weights) and their scales and zero points.
struct Int8Scratch {
  LargeBuffer<std::uint8_t> q;
  std::vector<float> scale;
  std::vector<std::int32_t> zero;
  Int8Scratch(int parts, index_t N, index_t I, index_t H)
      : q(make_large<std::uint8_t>(static_cast<std::size_t>(parts * detail::int8_lstm_q_bytes(N, I, H)))),
        scale(static_cast<std::size_t>(parts * 2 * N)), zero(static_cast<std::size_t>(parts * 2 * N)) {
    std::memset(q.get(), 0, static_cast<std::size_t>(parts * detail::int8_lstm_q_bytes(N, I, H)));
  }
  void into(detail::Int8LstmStep& S) {
    S.q = q.get(), S.qscale = scale.data(), S.qzero = zero.data();
  }
};

}  // namespace

void lstm_int8_forward(const std::uint8_t* buf, const float* x, const float* h0, const float* c0, float* y,
                       index_t ldy, float* h_n, float* c_n, index_t T, index_t N, index_t I, index_t H, Run run,
                       const std::string& path) {
  const Int8Path& p = path_named(path);
  const int parts = get_num_threads();
  const std::size_t state = static_cast<std::size_t>(N * H) * sizeof(float);
  auto hbuf = make_large<float>(static_cast<std::size_t>(2 * N * H));
  if (h0) std::memcpy(hbuf.get(), h0, state);
  else std::memset(hbuf.get(), 0, state);
  if (c0) std::memcpy(c_n, c0, state);
  else std::memset(c_n, 0, state);
  Int8Scratch scratch(parts, N, I, H);
  detail::Int8Lstm F{};
  F.step.packed = detail::align64(buf), F.step.c = c_n, F.step.ldc = H, F.step.ldy = ldy;
  F.step.N = N, F.step.I = I, F.step.H = H, F.step.parts = parts;
  scratch.into(F.step);
  F.hbuf = hbuf.get(), F.x = x, F.y = y, F.batch_sizes = run.batch_sizes, F.T = T, F.reverse = run.reverse;
  const auto loop = p.lstm_loop;
  parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, 2.0 * N * 4 * H * (I + H) / 4);
  std::memcpy(h_n, hbuf.get() + (T % 2) * N * H, state);
}

void lstm_int8_stream_step(float* h_new, float* c, const float* x, const float* h_prev,
                           const std::uint8_t* const* packs, index_t L, index_t N, index_t I0, index_t H) {
  const Int8Path& p = path_named("");
  const int parts = get_num_threads();
  Int8Scratch scratch(parts, N, I0 > H ? I0 : H, H);
  detail::Int8LstmStream F{};
  F.step.x = x, F.step.N = N, F.step.rows = N, F.step.H = H, F.step.parts = parts;
  scratch.into(F.step);
  F.packs = packs, F.h_prev = h_prev, F.h_new = h_new, F.c = c, F.L = L, F.I0 = I0;
  const auto loop = p.lstm_stream;
  parallel_steps([&F, loop](int tid, int nt) { loop(F, tid, nt); }, 2.0 * N * 4 * H * (I0 + H) / 4);
}

}  // namespace pylstm
