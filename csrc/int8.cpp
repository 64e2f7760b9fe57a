// The int8 products through the kernel table (int8.h).
#include "int8.h"

#include <stdexcept>
#include <string>

#include "kernels.h"

namespace pylstm {

void quantize_rows_u8(std::uint8_t* q, float* scale, std::int32_t* zero, const float* a, index_t N, index_t K) {
  kernels().i8.quantize_rows_u8(q, scale, zero, a, N, K);
}

void int8_accumulate(std::int32_t* acc, const std::uint8_t* aq, const std::int32_t* zero, const std::int8_t* Wq,
                     const std::int32_t* rowsum, index_t N, index_t J, index_t K) {
  if (K > kInt8MaxK)
    throw std::invalid_argument("an int8 product's reduction must be at most " + std::to_string(kInt8MaxK) +
                                " long, got " + std::to_string(K));
  kernels().i8.int8_accumulate(acc, aq, zero, Wq, rowsum, N, J, K);
}

}  // namespace pylstm
