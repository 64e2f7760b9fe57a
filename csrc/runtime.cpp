// Process-wide runtime of the core: the thread pool, the thread count, and what BLAS it runs on.
#include <dlfcn.h>
#if defined(__linux__)
#include <link.h>
#endif
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "blas.h"
#include "parallel.h"
#include "profile.h"
#include "sequence.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PYLSTM_PAUSE() _mm_pause()
#else
#define PYLSTM_PAUSE() std::this_thread::yield()
#endif

namespace pylstm {
namespace {

// One wait in a spin loop: pause for the first ~2048 checks, then yield the core between checks. A thread that waits
// for a partner must not hold the core the partner needs: with more runnable threads than cores (numpy's OpenBLAS
// threads spin for about 0.1 s after each numpy product, for one), a pure spin would burn a whole time slice while
// the partner waits in the run queue.
inline void relax(int spins) {
  if (spins < 2048) {
    PYLSTM_PAUSE();
  } else {
    std::this_thread::yield();
  }
}

template <typename Done>
inline void wait_for(Done done) {
  for (int spins = 0; !done(); ++spins) relax(spins);
}

// Workers spin this long after a region before they sleep: long enough to stay hot across the back-to-back calls
// of a training loop or of a cell stepped from Python, short enough not to steal a core from other work for long.
constexpr auto kSpinTime = std::chrono::microseconds(300);

struct alignas(64) Pool {
  std::mutex busy;               // held by the caller that owns the pool for one region
  std::atomic<int> size{1};      // threads of a region, the caller included (set_num_threads)
  int started = 1;               // workers started so far, plus the caller (under `busy`)

  // The current region: set by the caller before `generation` is bumped, read by the workers after.
  ParallelFn fn = nullptr;
  void* ctx = nullptr;
  int nt = 1;
  alignas(64) std::atomic<unsigned long> generation{0};
  alignas(64) std::atomic<int> pending{0};
  alignas(64) std::atomic<int> barrier_count{0};
  alignas(64) std::atomic<int> barrier_sense{0};

  std::mutex sleep_mutex;
  std::condition_variable wake;
  std::atomic<int> sleepers{0};

  void worker(int tid, unsigned long seen);
  void start_workers(int n);
  void enter(int tid);  // runs this thread's part of the current region
  // Runs fn on exactly `threads` threads (the caller as tid 0) if the pool is free; false, having run nothing, if
  // another caller holds it.
  bool try_run(ParallelFn fn, void* ctx, int threads);
};

// Leaked on purpose: detached workers may still be spinning on it while the process exits, and a forked child gets
// a fresh one (the parent's workers do not exist there, and its mutexes may be held).
Pool* g_pool = new Pool;
thread_local bool tl_in_region = false;
thread_local int tl_sense = 0;
thread_local int tl_nt = 1;  // threads of the region this thread runs in
thread_local Pool* tl_pool = nullptr;

// `seen` is the generation at the worker's creation: a region started before the thread runs is still its to join.
void Pool::worker(int tid, unsigned long seen) {
  for (;;) {
    auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
    unsigned long g;
    int spins = 0;
    while ((g = generation.load(std::memory_order_acquire)) == seen) {
      relax(spins);
      if (++spins % 256 == 0 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(sleep_mutex);
        sleepers.fetch_add(1);
        wake.wait(lock, [&] { return generation.load() != seen; });
        sleepers.fetch_sub(1);
      }
    }
    seen = g;
    if (tid < nt) {
      enter(tid);
      pending.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

void Pool::enter(int tid) {
  tl_in_region = true;
  tl_pool = this;
  tl_sense = barrier_sense.load(std::memory_order_relaxed);
  tl_nt = nt;
  fn(ctx, tid, nt);
  tl_in_region = false;
}

void Pool::start_workers(int n) {
  for (; started < n; ++started) {
    const int tid = started;
    const unsigned long seen = generation.load();
    std::thread([this, tid, seen] { worker(tid, seen); }).detach();
  }
}

// The OpenMP runtime whose team runs the pool's regions, once adopted (share_pool_with_openmp): GOMP_parallel, the
// entry point the compiler emits for `#pragma omp parallel`, found in the runtime torch loaded. Never freed.
struct OpenMP {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned);
  int (*thread_num)();
  int (*num_threads)();
  std::string path;
};
std::atomic<const OpenMP*> g_openmp{nullptr};

// One team member's part of a region run on OpenMP. A team smaller than asked for (the runtime's thread limit) is
// completed by threads of its own, so that every region still runs its `nt` parts at once.
void openmp_body(void* data) {
  Pool* pool = static_cast<Pool*>(data);
  const OpenMP* omp = g_openmp.load(std::memory_order_acquire);
  const int tid = omp->thread_num(), team = omp->num_threads();
  std::vector<std::thread> extra;
  if (tid == 0)
    for (int t = team; t < pool->nt; ++t) extra.emplace_back([pool, t] { pool->enter(t); });
  if (tid < pool->nt) pool->enter(tid);
  for (auto& t : extra) t.join();
}

bool Pool::try_run(ParallelFn f, void* c, int threads) {
  std::unique_lock<std::mutex> lock(busy, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  fn = f;
  ctx = c;
  nt = threads;
  const OpenMP* omp = g_openmp.load(std::memory_order_acquire);
  if (omp != nullptr) {  // the region's end is the runtime's own barrier
    omp->parallel(openmp_body, this, static_cast<unsigned>(threads), 0);
    return true;
  }
  start_workers(threads);
  pending.store(threads - 1, std::memory_order_relaxed);
  generation.fetch_add(1);  // seq_cst: pairs with the sleepers' check (no lost wake-up)
  if (sleepers.load() > 0) {
    std::lock_guard<std::mutex> g(sleep_mutex);
    wake.notify_all();
  }
  enter(0);
  wait_for([this] { return pending.load(std::memory_order_acquire) == 0; });
  return true;
}

// fn on the calling thread alone, as a region of one thread.
void run_inline(ParallelFn fn, void* ctx) {
  const bool outer = tl_in_region;
  const int outer_nt = tl_nt;
  tl_in_region = true;
  tl_nt = 1;
  fn(ctx, 0, 1);
  tl_in_region = outer;
  tl_nt = outer_nt;
}

}  // namespace

void parallel_run(ParallelFn fn, void* ctx) {
  Pool* pool = g_pool;
  const int size = pool->size.load(std::memory_order_relaxed);
  if (tl_in_region || size == 1 || !pool->try_run(fn, ctx, size)) run_inline(fn, ctx);
}

void parallel_run_inline(ParallelFn fn, void* ctx) { run_inline(fn, ctx); }

void parallel_run_exactly(ParallelFn fn, void* ctx, int nt) {
  if (nt <= 1) return run_inline(fn, ctx);
  if (!tl_in_region && g_pool->try_run(fn, ctx, nt)) return;
  // The pool is taken (another caller's region, or this thread's own): threads of their own for this one region.
  // They never meet pylstm's barrier, so they need none of the region's thread-locals.
  std::vector<std::thread> extra;
  extra.reserve(nt - 1);
  for (int tid = 1; tid < nt; ++tid) extra.emplace_back([fn, ctx, tid, nt] { fn(ctx, tid, nt); });
  fn(ctx, 0, nt);
  for (auto& t : extra) t.join();
}

void parallel_barrier() {
  if (!tl_in_region || tl_nt == 1) return;
  PYLSTM_PHASE(kPhaseBarrier);
  Pool* pool = tl_pool;
  const int nt = tl_nt;
  tl_sense ^= 1;
  if (pool->barrier_count.fetch_add(1, std::memory_order_acq_rel) == nt - 1) {
    pool->barrier_count.store(0, std::memory_order_relaxed);
    pool->barrier_sense.store(tl_sense, std::memory_order_release);
  } else {
    const int sense = tl_sense;
    wait_for([pool, sense] { return pool->barrier_sense.load(std::memory_order_acquire) == sense; });
  }
}

bool in_parallel_region() { return tl_in_region; }

namespace {
std::atomic<bool> g_fused_loops{true};
std::atomic<int> g_row_split{-1};
std::atomic<long> g_row_split_runs{0};
}  // namespace
long row_split_runs() { return g_row_split_runs.load(std::memory_order_relaxed); }
void count_row_split_run() { g_row_split_runs.fetch_add(1, std::memory_order_relaxed); }

bool fused_loops() { return g_fused_loops.load(std::memory_order_relaxed); }
void set_fused_loops(bool on) { g_fused_loops.store(on, std::memory_order_relaxed); }
int row_split_mode() { return g_row_split.load(std::memory_order_relaxed); }
void set_row_split_mode(int mode) { g_row_split.store(mode < 0 ? -1 : mode > 0 ? 1 : 0, std::memory_order_relaxed); }

std::string fused_split(const std::string& cell, std::int64_t N, std::int64_t H, bool float64) {
  const detail::RowSplitRule* rule = cell == "lstm" ? &detail::kLstmRowSplit
                                     : cell == "gru" ? &detail::kGruRowSplit
                                     : cell == "rnn" ? &detail::kRnnRowSplit
                                                     : nullptr;
  if (!rule) throw std::invalid_argument("cell must be 'lstm', 'gru' or 'rnn', got '" + cell + "'");
  return detail::rows_split(*rule, N, H, float64 ? 8 : 4, true) ? "rows" : "units";
}

int get_num_threads() { return g_pool->size.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
  scipy_openblas_set_num_threads(1);  // every parallel piece of work runs on this pool instead
  std::lock_guard<std::mutex> lock(g_pool->busy);  // not while a region runs on the old size
  g_pool->size.store(n, std::memory_order_relaxed);
}

const char* blas_config() { return scipy_openblas_get_config(); }

namespace {
std::atomic<std::uint64_t> g_phase_ns[kPhases];
}  // namespace

#ifdef PYLSTM_PROFILE
bool profiling_build() { return true; }
#else
bool profiling_build() { return false; }
#endif
void profile_read(std::uint64_t out[kPhases]) {
  for (int p = 0; p < kPhases; ++p) out[p] = g_phase_ns[p].load(std::memory_order_relaxed);
}
void profile_reset() {
  for (auto& v : g_phase_ns) v.store(0, std::memory_order_relaxed);
}
void profile_add(Phase phase, std::uint64_t ns) { g_phase_ns[phase].fetch_add(ns, std::memory_order_relaxed); }
std::uint64_t profile_now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

namespace {
#if defined(__linux__)
int find_openmp(struct dl_phdr_info* info, std::size_t, void* out) {
  if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;
  const std::string name = info->dlpi_name;
  const std::string base = name.substr(name.find_last_of('/') + 1);
  if (base.rfind("libgomp", 0) != 0 && base.rfind("libiomp", 0) != 0 && base.rfind("libomp", 0) != 0) return 0;
  void* h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return 0;
  auto* omp = new OpenMP{reinterpret_cast<void (*)(void (*)(void*), void*, unsigned, unsigned)>(
                             dlsym(h, "GOMP_parallel")),
                         reinterpret_cast<int (*)()>(dlsym(h, "omp_get_thread_num")),
                         reinterpret_cast<int (*)()>(dlsym(h, "omp_get_num_threads")), name};
  dlclose(h);  // the library stays loaded: torch holds it
  if (omp->parallel && omp->thread_num && omp->num_threads) {
    *static_cast<OpenMP**>(out) = omp;
    return 1;  // the first one found
  }
  delete omp;
  return 0;
}
#endif
std::mutex g_openmp_mutex;
}  // namespace

std::string openmp_team() {
  const OpenMP* omp = g_openmp.load(std::memory_order_acquire);
  return omp ? omp->path : std::string();
}

std::string share_pool_with_openmp(bool on) {
  std::lock_guard<std::mutex> adopt(g_openmp_mutex);
  std::lock_guard<std::mutex> no_region(g_pool->busy);  // not while a region runs
  if (!on) {
    g_openmp.store(nullptr, std::memory_order_release);  // leaked: a thread may still read the old one
    return {};
  }
  if (const OpenMP* omp = g_openmp.load()) return omp->path;
  OpenMP* found = nullptr;
#if defined(__linux__)
  dl_iterate_phdr(find_openmp, &found);  // elsewhere the pool keeps its own threads
#endif
  g_openmp.store(found, std::memory_order_release);
  return found ? found->path : std::string();
}

namespace {
struct ForkGuard {
  ForkGuard() {
    scipy_openblas_set_num_threads(1);
    pthread_atfork(nullptr, nullptr, [] {
      const int size = g_pool->size.load();
      g_pool = new Pool;  // the parent's workers are not in the child
      g_pool->size.store(size);
      // Nor is the OpenMP team: GNU libgomp hangs in a child that starts a region after the parent had a team.
      g_openmp.store(nullptr);
      tl_in_region = false;
      tl_pool = nullptr;
    });
  }
} fork_guard;
}  // namespace

}  // namespace pylstm
