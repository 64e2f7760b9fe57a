// Sigmoid and tanh for the gate kernels: branch-free float32 and float64 versions the compiler vectorises.
//
// float32 error bound: within 2e-7 relative of the exact value (measured 1.5e-7 for sigmoid on [-87, 30] and 1.8e-7
// for tanh, against float64 math; tests/test_activations.py checks 1e-6 over a dense grid), except that σ(x) for
// x < -88, a subnormal below 2e-39, is returned as 0. Exact at the edges: σ(+inf) = 1, σ(-inf) = 0,
// tanh(±inf) = ±1, tanh(±0) = ±0, NaN in gives NaN out. float64 has versions of the same shape (below), within
// 1e-15 relative of libm (tests/test_activations.py), with the same exact edges.
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

// Always inlined: a call left out of line (GCC declines to inline into the largest loops, pointwise_block among them)
// keeps the whole gate loop around it scalar, one call per element.
#define PYLSTM_ACT inline __attribute__((always_inline))

// e^x for x in [-87, 88] (callers clamp): Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, a degree-7 Taylor
// polynomial for e^r (truncation < 2e-9 there), and 2^n assembled in the exponent bits.
PYLSTM_ACT float exp_reduced(float x) {
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

PYLSTM_ACT float sigmoid_f32(float x) {
  float z = -x;  // comparisons written so that NaN passes through to the result
  z = z > 88.f ? 88.f : z;
  z = z < -87.f ? -87.f : z;
  const float s = 1.f / (1.f + exp_reduced(z));
  return x < -88.f ? 0.f : s;  // σ(x) < 1e-38 there: round the tail to the exact 0 of σ(-inf)
}

PYLSTM_ACT float tanh_f32(float x) {
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

// float64: the same shapes with double-precision constants, so that the compiler vectorises them as well (libm's
// exp and tanh are scalar calls, which kept every float64 gate loop at one element per call).

// e^x for x in [-708, 709] (callers clamp): x = n·ln2 + r with ln 2 in two parts (fdlibm's split), |r| ≤ ln2/2, a
// degree-12 Taylor polynomial for e^r (truncation < 2e-16 relative there), 2^n assembled in the exponent bits.
PYLSTM_ACT double exp_reduced_f64(double x) {
  const double fn = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;  // round(x / ln2)
  double r = x - fn * 6.93147180369123816490e-01;
  r = r - fn * 1.90821492927058770002e-10;
  double p = 1.0 / 479001600;
  p = p * r + 1.0 / 39916800;
  p = p * r + 1.0 / 3628800;
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const double fn_finite = fn == fn ? fn : 0.0;
  const std::int64_t bits = (static_cast<std::int64_t>(fn_finite) + 1023) * (std::int64_t(1) << 52);
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

PYLSTM_ACT double sigmoid_f64(double x) {
  double z = -x;  // NaN passes through the comparisons to the result
  z = z > 709.0 ? 709.0 : z;
  z = z < -708.0 ? -708.0 : z;
  const double s = 1.0 / (1.0 + exp_reduced_f64(z));
  return x < -709.0 ? 0.0 : s;  // σ(x) < 1.2e-308 there: the tail rounds to σ(-inf) = 0
}

PYLSTM_ACT double tanh_f64(double x) {
  const double ax = __builtin_fabs(x);
  // |x| < 0.55: tanh x = m / (m + 2) with m = e^{2x} - 1 from its Taylor series to degree 20 (truncation < 2e-19
  // for |2x| < 1.1), free of the cancellation in 1 - 2/(e^{2|x|} + 1), which below tanh = 1/2 would double the
  // error.
  const double y = 2.0 * x;
  double m = 1.0 / 2432902008176640000.0;
  m = m * y + 1.0 / 121645100408832000.0;
  m = m * y + 1.0 / 6402373705728000.0;
  m = m * y + 1.0 / 355687428096000.0;
  m = m * y + 1.0 / 20922789888000.0;
  m = m * y + 1.0 / 1307674368000.0;
  m = m * y + 1.0 / 87178291200.0;
  m = m * y + 1.0 / 6227020800.0;
  m = m * y + 1.0 / 479001600.0;
  m = m * y + 1.0 / 39916800.0;
  m = m * y + 1.0 / 3628800.0;
  m = m * y + 1.0 / 362880.0;
  m = m * y + 1.0 / 40320.0;
  m = m * y + 1.0 / 5040.0;
  m = m * y + 1.0 / 720.0;
  m = m * y + 1.0 / 120.0;
  m = m * y + 1.0 / 24.0;
  m = m * y + 1.0 / 6.0;
  m = m * y + 0.5;
  m = m * y + 1.0;
  m = m * y;  // keeps the sign of -0
  const double small = m / (m + 2.0);
  double z = 2.0 * ax;  // otherwise 1 - 2/(e^{2|x|} + 1); beyond |x| = 20 it rounds to exactly 1
  z = z > 40.0 ? 40.0 : z;
  const double large = __builtin_copysign(1.0 - 2.0 / (exp_reduced_f64(z) + 1.0), x);
  return ax < 0.55 ? small : large;
}

PYLSTM_ACT float act_sigmoid(float x) { return sigmoid_f32(x); }
PYLSTM_ACT float act_tanh(float x) { return tanh_f32(x); }
PYLSTM_ACT double act_sigmoid(double x) { return sigmoid_f64(x); }
PYLSTM_ACT double act_tanh(double x) { return tanh_f64(x); }

#undef PYLSTM_ACT

}  // namespace PYLSTM_ISA_NS
}  // namespace pylstm
