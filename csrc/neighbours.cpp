// The pool's neighbours: other OpenBLAS libraries in the process run their parallel work on pylstm's pool.
//
// NumPy brings its own OpenBLAS, whose worker threads, after each multi-threaded product, spin for 2^28 cycles
// (about 0.1 s) before they sleep. On a machine with as many cores as pylstm's pool has threads, such a spinner
// takes its fair share of a core from a pool whose threads meet once per time step, and the whole step waits for
// the thread it displaced: measured, an LSTM forward and backward took twice as long with one NumPy product between
// them (README, "Threads"). OpenBLAS (>= 0.3.27) lets the caller run its parallel work instead
// (openblas_set_threads_callback_function): NumPy's products then run on pylstm's pool, on as many threads as NumPy's
// own setting asks for, and NumPy's workers, given nothing to do, go to sleep for good.
#include <dlfcn.h>
#if defined(__linux__)
#include <link.h>
#endif

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <cblas.h>

#include "parallel.h"

namespace pylstm {
namespace {

// OpenBLAS's callback types (its cblas.h, 0.3.27 and later).
using DoJob = void (*)(int thread_num, void* jobdata, int dispatch);
using ThreadsCallback = void (*)(int sync, DoJob dojob, int numjobs, std::size_t elsize, void* jobdata, int dispatch);
using SetCallback = void (*)(ThreadsCallback);

// OpenBLAS keeps a buffer and a status word per `thread_num`; two products running at once (from two Python
// threads) must not share one. Each call takes `numjobs` distinct slots of the 64 (OpenBLAS's MAX_CPU_NUMBER in the
// wheels' builds) for as long as it runs.
constexpr int kSlots = 64;
std::atomic<std::uint64_t> g_slots{0};
std::atomic<long> g_products{0};  // products run here, for the tests

int take_slots(int n) {
  const std::uint64_t want = n >= 64 ? ~0ull : ((1ull << n) - 1);
  for (;;) {
    std::uint64_t used = g_slots.load(std::memory_order_relaxed);
    for (int base = 0; base + n <= kSlots; ++base) {
      const std::uint64_t mask = want << base;
      if ((used & mask) == 0) {
        if (g_slots.compare_exchange_weak(used, used | mask, std::memory_order_acquire)) return base;
        base = -1;  // `used` changed: look again from the start
      }
    }
    std::this_thread::yield();  // more than 64 threads' worth of products at once: wait for one to end
  }
}

void give_slots(int base, int n) {
  const std::uint64_t want = n >= 64 ? ~0ull : ((1ull << n) - 1);
  g_slots.fetch_and(~(want << base), std::memory_order_release);
}

struct Jobs {
  DoJob dojob;
  char* data;
  std::size_t elsize;
  int dispatch;
  int base;
};

void run_jobs(void* ctx, int tid, int) {
  const Jobs& j = *static_cast<const Jobs*>(ctx);
  j.dojob(j.base + tid, j.data + static_cast<std::size_t>(tid) * j.elsize, j.dispatch);
}

// OpenBLAS calls this with sync = 1 and the jobs of one product; the jobs wait for each other's packed panels, so
// they must all run at once, one thread each.
void openblas_jobs(int /*sync*/, DoJob dojob, int numjobs, std::size_t elsize, void* jobdata, int dispatch) {
  if (numjobs <= 0) return;
  g_products.fetch_add(1, std::memory_order_relaxed);
  if (numjobs > kSlots) numjobs = kSlots;  // OpenBLAS never asks for more than its MAX_CPU_NUMBER
  Jobs jobs{dojob, static_cast<char*>(jobdata), elsize, dispatch, take_slots(numjobs)};
  parallel_run_exactly(run_jobs, &jobs, numjobs);
  give_slots(jobs.base, numjobs);
}

// Which name a library gives the setter: the plain one, or the scipy-openblas wheels' prefixed ones (NumPy's
// 64-bit-integer build carries a `64_` suffix).
constexpr const char* kSetterNames[] = {
    "openblas_set_threads_callback_function",
    "scipy_openblas_set_threads_callback_function64_",
    "scipy_openblas_set_threads_callback_function",
};

struct Found {
  std::string path;
  SetCallback set;
};

#if defined(__linux__)
int visit(struct dl_phdr_info* info, std::size_t, void* out) {
  if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;
  void* h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return 0;
  // dlsym on a handle also searches the library's dependencies: name the file that defines the symbol, once.
  auto& found = *static_cast<std::vector<Found>*>(out);
  for (const char* name : kSetterNames) {
    void* f = dlsym(h, name);
    Dl_info where{};
    if (f == nullptr || !dladdr(f, &where) || where.dli_fname == nullptr) continue;
    bool seen = false;
    for (const Found& g : found) seen = seen || g.path == where.dli_fname;
    if (!seen) found.push_back({where.dli_fname, reinterpret_cast<SetCallback>(f)});
    break;
  }
  dlclose(h);  // drops only the reference taken above: the library stays loaded
  return 0;
}
#endif

// The file of the OpenBLAS pylstm itself links: it runs single-threaded (the pool splits its products), so its
// callback is never called and it is left alone.
std::string own_openblas() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&scipy_cblas_sgemm), &info) && info.dli_fname) return info.dli_fname;
  return {};
}

// Stops the idle worker threads of the OpenBLAS in `path` (its blas_thread_shutdown_, which OpenBLAS itself calls
// before a fork). Its workers spin for 2^28 cycles after they are created, which NumPy's load does: a process's first
// pylstm calls, within about 0.2 s of `import numpy`, shared a core with that spinner. LSTM (100, 32, 256, 256)
// inference, calls 1-3 of fresh processes (Xeon 6/207, 2026-12-06, four each): 23.8-24.9 / 17.7-18.6 / 9.7-16.9 ms
// with the workers, 12.5-12.9 / 8.7-8.9 / 8.6-8.8 ms without (the first call takes the workspace's page faults).
// With the callback set the workers have nothing to do; OpenBLAS starts them again at its next multi-threaded
// product (before it calls the callback), and they spin once more and then sleep. Once per process, at the first
// sharing (pylstm's import, unless opted out): the shutdown joins the workers and does not wait for a product that
// another thread began before the callback was set (OpenBLAS's own fork handler calls it with the same window), so
// it is not repeated at later calls of share_threads_with_numpy, when NumPy work may be running.
void stop_idle_workers(const std::string& path) {
  void* h = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return;
  if (void* f = dlsym(h, "blas_thread_shutdown_")) reinterpret_cast<int (*)()>(f)();
  dlclose(h);
}

std::mutex g_share_mutex;
bool g_workers_stopped = false;  // under g_share_mutex

}  // namespace

long openblas_products_on_pool() { return g_products.load(std::memory_order_relaxed); }

std::vector<std::string> share_pool_with_openblas(bool on) {
  std::lock_guard<std::mutex> lock(g_share_mutex);
  std::vector<Found> found;
#if defined(__linux__)
  dl_iterate_phdr(visit, &found);  // elsewhere no loaded library is looked at: NumPy keeps its own threads
#endif
  const std::string own = own_openblas();
  std::vector<std::string> shared;
  for (const Found& f : found) {
    if (f.path == own) continue;
    f.set(on ? openblas_jobs : nullptr);
    if (on) {
      if (!g_workers_stopped) stop_idle_workers(f.path);
      shared.push_back(f.path);
    }
  }
  if (on) g_workers_stopped = true;
  return shared;
}

}  // namespace pylstm
