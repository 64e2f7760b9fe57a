// The int8 products of the int8 inference path (issue 26): the math of reference.py's int8 section, through this
// level's kernel table. Weights are quantized once (symmetric int8, one scale per output row: Python's
// reference.quantize_weights_int8); each product's input is quantized per row as u8 with a zero point at every step,
// and the products accumulate in int32 with the zero point taken out by the weights' row sums.
#pragma once

#include <cstdint>

#include "common.h"

namespace pylstm {

// The longest reduction whose int32 sums cannot overflow: 255 · 127 · K ≤ 2³¹ − 1 (reference._INT8_MAX_K).
constexpr index_t kInt8MaxK = index_t{2147483647} / (255 * 127);

// q [N][K], scale [N], zero [N] from a [N][K] (finite values): reference.quantize_rows_u8.
void quantize_rows_u8(std::uint8_t* q, float* scale, std::int32_t* zero, const float* a, index_t N, index_t K);

// acc [N][J] = aq [N][K] Wq [J][K]ᵀ − zero [N] · rowsum [J], exactly: reference.int8_accumulate. Throws
// std::invalid_argument when K > kInt8MaxK.
void int8_accumulate(std::int32_t* acc, const std::uint8_t* aq, const std::int32_t* zero, const std::int8_t* Wq,
                     const std::int32_t* rowsum, index_t N, index_t J, index_t K);

}  // namespace pylstm
