// Where a call's time goes, in a profiling build (cmake -DPYLSTM_PROFILE=ON; benchmarks/breakdown.py reads it).
//
// PYLSTM_PHASE(kRecurrent) times the rest of the enclosing scope and adds it to that phase's total, summed over
// threads (thread-time, not wall time). PYLSTM_PHASE_POOL(p) is for a scope on the calling thread around work that
// the pool splits (a BLAS product): its wall time counts once per pool thread. In an ordinary build both macros are
// empty and nothing is counted.
#pragma once

#include <cstdint>

namespace pylstm {

int get_num_threads();  // (common.h)

enum Phase : int {
  kPhasePack,          // packing weights into the fused loops' layout
  kPhaseProjection,    // the input projections x W_ihᵀ, inside the loops or as one GEMM before them
  kPhaseRecurrent,     // the per-step recurrent products (forward h W_hhᵀ, backward da W_hh)
  kPhaseGates,         // the per-step element-wise gate math, forward and backward
  kPhaseBarrier,       // waiting at the per-step barrier
  kPhaseGradientGemm,  // the weight and input gradients after the backward loop
  kPhases
};

// Nanoseconds of thread-time per phase since the last reset (all zero in an ordinary build), and whether this build
// counts at all.
bool profiling_build();
void profile_read(std::uint64_t out[kPhases]);
void profile_reset();
void profile_add(Phase phase, std::uint64_t ns);
std::uint64_t profile_now_ns();

#ifdef PYLSTM_PROFILE
struct PhaseTimer {
  Phase phase;
  std::uint64_t weight, t0;
  explicit PhaseTimer(Phase p, int threads = 1)
      : phase(p), weight(static_cast<std::uint64_t>(threads)), t0(profile_now_ns()) {}
  ~PhaseTimer() { profile_add(phase, weight * (profile_now_ns() - t0)); }
};
#define PYLSTM_PHASE_CAT2(a, b) a##b
#define PYLSTM_PHASE_CAT(a, b) PYLSTM_PHASE_CAT2(a, b)
#define PYLSTM_PHASE(p) ::pylstm::PhaseTimer PYLSTM_PHASE_CAT(pylstm_phase_, __LINE__)(::pylstm::p)
#define PYLSTM_PHASE_POOL(p) \
  ::pylstm::PhaseTimer PYLSTM_PHASE_CAT(pylstm_phase_, __LINE__)(::pylstm::p, ::pylstm::get_num_threads())
#else
#define PYLSTM_PHASE(p) static_cast<void>(0)
#define PYLSTM_PHASE_POOL(p) static_cast<void>(0)
#endif

}  // namespace pylstm
