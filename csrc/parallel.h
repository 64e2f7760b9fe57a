// pylstm's one thread pool: parallel regions for the fused time loops, and the split GEMMs of blas.h.
//
// OpenBLAS is kept single-threaded and every parallel piece of work runs here, so that two pools never spin against
// each other on the same cores. A region runs fn(ctx, tid, nt) on nt threads, the caller being tid 0; inside it,
// parallel_barrier() synchronises the nt threads (once per time step in the fused loops). Regions do not nest: a
// region started while another caller holds the pool, or from inside a region, runs on the calling thread alone
// (nt = 1), which gives the same results, since every kernel's partition of work leaves each output element's
// arithmetic unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace pylstm {

using ParallelFn = void (*)(void* ctx, int tid, int nt);

void parallel_run(ParallelFn fn, void* ctx);
void parallel_barrier();
bool in_parallel_region();

// fn on exactly nt concurrent threads, for work whose parts wait for each other by themselves (OpenBLAS's threaded
// GEMM): on the pool when it is free, whatever its size; on threads of their own when another caller holds it.
// parallel_barrier() is not for such work.
void parallel_run_exactly(ParallelFn fn, void* ctx, int nt);

// The other OpenBLAS libraries loaded in the process (NumPy's, SciPy's), when they take a threading callback
// (OpenBLAS >= 0.3.27), run their parallel work on this pool instead of on worker threads of their own, which spin
// for about 0.1 s after every call on the cores the pool needs (neighbours.cpp); the first call with on = true also
// stops their idle workers, which spin after their creation too. on = false gives them their own threads back. Returns the paths of
// the libraries that now run on the pool.
std::vector<std::string> share_pool_with_openblas(bool on);
// The pool's regions run on the team of an OpenMP runtime already loaded in the process (torch's libgomp), so that
// its workers, which spin for milliseconds after each of torch's parallel operations, are the pool's own threads
// instead of competitors for the cores. Returns the runtime's path ("" when none is loaded, or on = false: the
// pool's own threads again).
std::string share_pool_with_openmp(bool on);
std::string openmp_team();  // the adopted runtime's path, or "" (also in a forked child, which runs its own pool)
// How many multi-threaded products of other OpenBLAS libraries the pool has run (for the tests).
long openblas_products_on_pool();

// Whether the time loops take their fused form (the default) or the BLAS-per-step reference shape, which the tests
// switch to in order to check both against the reference. Process-wide; not for use while kernels run.
bool fused_loops();
void set_fused_loops(bool on);
// Which split the fused loops take (the plain LSTM's, the GRU's with the reset after the product, the RNN's): -1 the
// rule (sequence.h, rows_split), 0 always the units, 1 the rows wherever the options allow. Process-wide, for the
// tests and the measurements behind the rule.
int row_split_mode();
void set_row_split_mode(int mode);
// How many forward loops of the GRU and the RNN have run split by rows (their drivers count each one that does), so
// that the tests can see the split taken and not only its results.
long row_split_runs();
void count_row_split_run();
// The rule's choice for `cell` ("lstm": the plain LSTM, recurrent dropout and zoneout included, where a projection
// or peepholes always take the units; "gru": with the reset after the product, where the original form always takes
// the units; "rnn") over N rows of H units, float32 or float64: "rows" or "units".
std::string fused_split(const std::string& cell, std::int64_t N, std::int64_t H, bool float64);

// f(tid, nt) on the pool.
template <typename F>
void parallel(F&& f) {
  parallel_run([](void* c, int tid, int nt) { (*static_cast<std::remove_reference_t<F>*>(c))(tid, nt); },
               const_cast<void*>(static_cast<const void*>(&f)));
}

// Below this much work between two barriers, a time loop's region runs on the calling thread alone, with the same
// parts (so with the same results): a barrier costs about a microsecond, more than a second thread saves on less.
constexpr double kMinStepFlops = 1 << 16;

// f(tid, nt) for a time loop whose threads meet once per step, each step doing about `step_flops` of work: on the
// pool, or on the calling thread alone when a step is too small to share.
void parallel_run_inline(ParallelFn fn, void* ctx);
template <typename F>
void parallel_steps(F&& f, double step_flops) {
  auto body = [](void* c, int tid, int nt) { (*static_cast<std::remove_reference_t<F>*>(c))(tid, nt); };
  void* ctx = const_cast<void*>(static_cast<const void*>(&f));
  if (step_flops < kMinStepFlops) parallel_run_inline(body, ctx);
  else parallel_run(body, ctx);
}

// [begin, end) of part `tid` of `n` items split as evenly as possible into `nt` parts.
inline std::pair<std::int64_t, std::int64_t> split_range(std::int64_t n, int tid, int nt) {
  return {n * tid / nt, n * (tid + 1) / nt};
}

// Calls f(begin, end) for each of the `parts` even parts of n items that thread tid of an nt-thread region owns
// (part ≡ tid mod nt). The parts depend on `parts` alone, so a region that runs on fewer threads than planned
// (nt = 1 when the pool is busy) does the same work, element by element.
template <typename F>
void for_parts(std::int64_t n, int parts, int tid, int nt, F&& f) {
  for (int part = tid; part < parts; part += nt) {
    const auto [begin, end] = split_range(n, part, parts);
    f(begin, end);
  }
}

}  // namespace pylstm
