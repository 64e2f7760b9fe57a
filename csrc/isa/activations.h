// Sigmoid and tanh for the gate kernels: branch-free float32 versions the compiler vectorises, libm for float64.
//
// float32 error bound: within 2e-7 relative of the exact value (measured 1.5e-7 for sigmoid on [-87, 30] and 1.8e-7
// for tanh, against float64 math; tests/test_activations.py checks 1e-6 over a dense grid), except that σ(x) for
// x < -88, a subnormal below 2e-39, is returned as 0. Exact at the edges: σ(+inf) = 1, σ(-inf) = 0,
// tanh(±inf) = ±1, tanh(±0) = ±0, NaN in gives NaN out. float64 uses std::exp / std::tanh (correctly rounded to
// within 1 ulp), since float64 users ask for agreement to ~1e-10 and these loops are not the float64 bottleneck.
//
// Compiled once per ISA level (included by kernels.inc only), into that level's namespace.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifndef PYLSTM_ISA_NS
#error "csrc/isa/ headers are compiled per ISA level: include them through csrc/isa/kernels.inc"
#endif

namespace pylstm {
namespace PYLSTM_ISA_NS {

// e^x for x in [-87, 88] (callers clamp): Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, a degree-7 Taylor
// polynomial for e^r (truncation < 2e-9 there), and 2^n assembled in the exponent bits.
inline float exp_reduced(float x) {
  const float fn = (x * 1.44269504f + 12582912.f) - 12582912.f;  // round(x / ln2) by the 1.5·2^23 trick
  float r = x - fn * 0.693359375f;                               // ln 2 split in two for an exact first product
  r = r + fn * 2.12194440e-4f;
  float p = 1.f / 5040;
  p = p * r + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  // NaN -> 0 before the cast (converting NaN to int is undefined); p still carries the NaN to the result.
  const float fn_finite = fn == fn ? fn : 0.f;
  const std::int32_t bits = (static_cast<std::int32_t>(fn_finite) + 127) * (1 << 23);
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid_f32(float x) {
  float z = -x;  // comparisons written so that NaN passes through to the result
  z = z > 88.f ? 88.f : z;
  z = z < -87.f ? -87.f : z;
  const float s = 1.f / (1.f + exp_reduced(z));
  return x < -88.f ? 0.f : s;  // σ(x) < 1e-38 there: round the tail to the exact 0 of σ(-inf)
}

inline float tanh_f32(float x) {
  const float ax = __builtin_fabsf(x);  // builtins, not <cmath> inlines a linker could share across levels
  // |x| < 0.4: odd Taylor series to x^11 (truncation < 1e-7 relative); no cancellation near 0.
  const float x2 = x * x;
  float p = -1382.f / 155925;
  p = p * x2 + 62.f / 2835;
  p = p * x2 - 17.f / 315;
  p = p * x2 + 2.f / 15;
  p = p * x2 - 1.f / 3;
  const float small = x * (1.f + x2 * p);  // keeps the sign of -0
  // otherwise 1 - 2/(e^{2|x|} + 1); beyond |x| = 20 it rounds to exactly 1.
  float z = 2.f * ax;
  z = z > 40.f ? 40.f : z;
  const float large = __builtin_copysignf(1.f - 2.f / (exp_reduced(z) + 1.f), x);
  return ax < 0.4f ? small : large;
}

inline float act_sigmoid(float x) { return sigmoid_f32(x); }
inline float act_tanh(float x) { return tanh_f32(x); }
inline double act_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double act_tanh(double x) { return std::tanh(x); }

}  // namespace PYLSTM_ISA_NS
}  // namespace pylstm
