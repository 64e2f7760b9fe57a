// The low-precision inference paths (issue 26), through this level's kernel table.
//
// int8: the math of reference.py's int8 section. Weights are quantized once (symmetric int8, one scale per output
// row: Python's reference.quantize_weights_int8); each product's input is quantized per row as u8 with a zero point
// at every step, and the products accumulate in int32 with the zero point taken out by the weights' row sums.
// bfloat16: reference.py's bfloat16 section. Weights and each product's input rounded to bfloat16 (nearest even),
// products summed in float32 (vdpbf16ps). In both, gate maths and the cell state stay in float32.
//
// The products run on register tiles of one panel of packed weights (kernels.h, lowp_panels): V column vectors of
// the level's lanes (an LSTM unit block's four gates), 4 (int8) or 2 (bfloat16) reduction steps per dot. Per level
// the table holds every dot form the CPU runs, best first (isa/int8.inc):
//   avx512: int8 "avx512-vnni" (vpdpbusd), "avx512" (vpmaddwd on widened int16, exact); bf16 "avx512-bf16"
//   avx2:   int8 "avx-vnni" (the VEX vpdpbusd of Alder Lake and Zen 5), "avx2" (vpmaddwd on widened int16, exact)
//   sse2:   int8 "portable" (plain int32 loops)
// All the int8 forms give the same int32 sums (exact, as the reference's), which tests/test_int8_kernels.py checks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "kernels.h"  // detail::LowpCell

namespace pylstm {

// The longest reduction whose int32 sums cannot overflow: 255 · 127 · K ≤ 2³¹ − 1 (reference._INT8_MAX_K).
constexpr index_t kInt8MaxK = index_t{2147483647} / (255 * 127);

// The int8 dot forms this CPU runs at the level in use, best first (the first is the default).
std::vector<std::string> int8_paths();
// The bfloat16 form at the level in use ("avx512-bf16"), or "" when there is none.
std::string bf16_path();

// q [N][K], scale [N], zero [N] from a [N][K] (finite values): reference.quantize_rows_u8.
void quantize_rows_u8(std::uint8_t* q, float* scale, std::int32_t* zero, const float* a, index_t N, index_t K);

// acc [N][J] = aq [N][K] Wq [J][K]ᵀ − zero [N] · rowsum [J], exactly: reference.int8_accumulate, through the packed
// tiles of dot form `path` (one of int8_paths(); "" for the default). Throws std::invalid_argument when
// K > kInt8MaxK, a row sum is not Wq's, or the path is unknown.
void int8_accumulate(std::int32_t* acc, const std::uint8_t* aq, const std::int32_t* zero, const std::int8_t* Wq,
                     const std::int32_t* rowsum, index_t N, index_t J, index_t K, const std::string& path = "");

// ---- a low-precision layer direction: LSTM (with peepholes or a projection), GRU (both forms), RNN ----
// `cell` (kernels.h, LowpCell) names the cell; V = lowp_gates(cell) gate blocks (LSTM 4: i, f, g, o; GRU 3: r, z, n;
// RNN 1), the weights' rows in PyTorch's order. P is the width of h: the LSTM's proj_size with a projection
// (LstmProj, whose W_hh is [4H][P] and W_hr [P][H]), H otherwise.

// Bytes of one layer direction's packed weights at any level (with 64 bytes of alignment slack).
index_t lowp_packed_bytes(bool bf16, detail::LowpCell cell, index_t I, index_t H, index_t P);

// Packs a layer direction into buf [lowp_packed_bytes(false, cell, I, H, P)] at the level in use: Wq_ih [V·H][I],
// Wq_hh [V·H][P] int8 with their row scales s_ih, s_hh [V·H], b_ih and b_hh ([V·H] each, or nullptr for none), the
// LSTM's peepholes peep [3][H] (p_i, p_f, p_o; nullptr for none) and the projection's Wq_hr [P][H] with s_hr [P]
// (nullptr unless LstmProj). Throws std::invalid_argument when I or H exceeds kInt8MaxK.
void lowp_pack_int8(detail::LowpCell cell, std::uint8_t* buf, const std::int8_t* Wq_ih, const float* s_ih,
                    const std::int8_t* Wq_hh, const float* s_hh, const float* b_ih, const float* b_hh,
                    const float* peep, const std::int8_t* Wq_hr, const float* s_hr, index_t I, index_t H, index_t P);
// The same for bfloat16 (buf [lowp_packed_bytes(true, cell, I, H, P)]): W_ih, W_hh (and W_hr) float32, rounded to
// bfloat16 here. Throws std::invalid_argument where the level has no bfloat16 products.
void lowp_pack_bf16(detail::LowpCell cell, std::uint8_t* buf, const float* W_ih, const float* W_hh, const float* b_ih,
                    const float* b_hh, const float* peep, const float* W_hr, index_t I, index_t H, index_t P);

// T steps from (h0 [N][P], c0 [N][H]) (nullptr for zeros; c0 and c_n only for the LSTM, nullptr otherwise), as the
// float sequence functions' inference (lstm.h, gru.h, rnn.h): y [T][N][ldy] takes h_t in columns [0, P); h_n [N][P]
// (and c_n [N][H]) the final state. run: direction and lengths (rows past their end are left as the caller set
// them). `path` as int8_accumulate's (int8 only; "" for bf16).
void lowp_forward(bool bf16, detail::LowpCell cell, const std::uint8_t* buf, const float* x, const float* h0,
                  const float* c0, float* y, index_t ldy, float* h_n, float* c_n, index_t T, index_t N, index_t I,
                  index_t H, index_t P, Run run, const std::string& path = "");

// One inference step of a stack of L layers of a one-phase cell (no projection, not the original GRU; the streaming
// form of lstm_stream_step, lstm.h): x [N][I0], h_prev
// [L][N][H] in, h_new [L][N][H] out, c [L][N][H] in place (LSTM; nullptr otherwise); packs[l] from the packer of that
// precision and cell (layer 0 for I0 inputs, the others for H). One parallel region per step; one barrier per layer.
void lowp_stream_step(bool bf16, detail::LowpCell cell, float* h_new, float* c, const float* x, const float* h_prev,
                      const std::uint8_t* const* packs, index_t L, index_t N, index_t I0, index_t H);

}  // namespace pylstm
