// Large scratch and packed-weight buffers, backed by transparent huge pages where the OS offers them.
//
// The fused loops keep each thread's packed weights and gate rows in its L2 cache, which they nearly fill at the
// benchmark sizes (1.4 MB of packed weights for an LSTM with I = 96, H = 256). Measured on a 2-core Zen 5 guest
// (2026-12-04): with 4 KB pages six processes in a row ran that LSTM's forward + backward at 16.9 ms; with huge pages
// four in a row ran at 12.1-12.4 ms. The suspected mechanism is L2 set conflicts between 4 KB pages placed at
// random, which a physically contiguous 2 MB page avoids; it is not proven, and slow stretches of the same size still
// occur on that machine with huge pages (benchmarks/README.md, "Noise"). Linux gives a huge page to an aligned region
// that asks for it with madvise when transparent huge pages are "always" or "madvise" (the common default).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pylstm {

constexpr std::size_t kHugePage = std::size_t(2) << 20;

// Frees what alloc_large returned.
struct LargeFree {
  void operator()(void* p) const { std::free(p); }
};

// Which pages a large buffer asks for. Huge pages serve the forward's packed weights (above); the LSTM backward's
// workspace, which holds the row split's copy of W_hh by column groups (isa/tiles.inc), ran slower in them: LSTM
// training (64, 32, 96, 256) forward + backward with that copy in huge pages took 11.7-14.6 ms (11 of 16 processes
// at 13.9 or more), in ordinary pages 11.9-12.4 ms in all of 20 (2-core Zen 5, AVX-512, 2026-12-05, alternating
// processes). The mechanism is unproven here too (L2 sets shared with other huge-page arrays at fixed offsets,
// presumably).
enum class Pages { Huge, Small };

// `bytes` of uninitialised memory, 64-byte aligned. Huge: from 1 MB on, 2 MB aligned, rounded up to whole 2 MB pages
// and marked for huge pages. Small: from 1 MB on, page aligned and marked to stay in 4 KB pages (where THP is
// "always"). Throws std::bad_alloc.
inline void* alloc_large(std::size_t bytes, Pages pages = Pages::Huge) {
  const bool large = bytes >= (kHugePage >> 1), huge = large && pages == Pages::Huge;
  const std::size_t align = huge ? kHugePage : large ? 4096 : 64;
  const std::size_t size = (bytes + align - 1) / align * align;
  void* p = nullptr;
  if (posix_memalign(&p, align, size ? size : 64) != 0) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(MADV_NOHUGEPAGE)
  if (large) madvise(p, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);  // advice only
#endif
  return p;
}

// Memory for the arrays the bindings give to NumPy (their outputs, the training caches, _core.empty): 64-byte
// aligned, like every buffer the kernels write, where NumPy's own allocator promises 16 bytes. With the batch split
// across threads by rows, a row boundary of an array 16 bytes off a cache line puts one line in two threads' writes at
// every step, and every vector the kernels load or store there spans two lines. LSTM (T, N, I, H) = (64, 32, 1, 256)
// training forward, 2-core Zen 5, AVX-512, 2026-12-05, one process each: with the cache 16 bytes off a line 3.73 and
// 3.75 ms, aligned 3.31 and 3.38 (1 thread, N = 16: 3.09 against 2.91). From 4 MB on they ask for huge pages, as
// NumPy does for its own arrays of that size.
//
// A training loop frees and allocates the same sizes at every step (a layer's output, a linear layer's dx), and the C
// allocator hands such blocks back to the OS, so that the next step takes their page faults again (124 per call of
// the user loop's head backward, whose dx is 2 MB: 0.94 ms a call with those faults, 0.52 without). Freed arrays of
// kCachedArrayBytes or more are therefore kept, kKeptArrayBytes in all, the oldest given back first, and an
// allocation of the same size (whole pages) takes one of them.
constexpr std::size_t kCachedArrayBytes = std::size_t(256) << 10, kKeptArrayBytes = std::size_t(64) << 20;

namespace detail {
struct ArrayCache {
  std::mutex m;
  std::vector<std::pair<void*, std::size_t>> kept;  // freed blocks and their sizes, oldest first
  std::unordered_map<void*, std::size_t> live;      // the cached-size blocks in use
  std::size_t kept_bytes = 0;
};
// Leaked on purpose: NumPy may free arrays while the process exits, after static destructors ran.
inline ArrayCache& array_cache() {
  static ArrayCache* cache = new ArrayCache;
  return *cache;
}
}  // namespace detail

inline void* alloc_array(std::size_t bytes) {
  void* p = nullptr;
  if (bytes < kCachedArrayBytes) {
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) throw std::bad_alloc();
    return p;
  }
  const std::size_t size = (bytes + 4095) / 4096 * 4096;
  auto& cache = detail::array_cache();
  {
    std::lock_guard<std::mutex> lock(cache.m);
    for (auto it = cache.kept.rbegin(); it != cache.kept.rend(); ++it)
      if (it->second == size) {
        p = it->first;
        cache.kept.erase(std::next(it).base());
        cache.kept_bytes -= size;
        cache.live.emplace(p, size);
        return p;
      }
  }
  if (size >= (std::size_t(4) << 20)) {
    p = alloc_large(size, Pages::Huge);
  } else if (posix_memalign(&p, 4096, size) != 0) {
    throw std::bad_alloc();
  }
  try {
    std::lock_guard<std::mutex> lock(cache.m);
    cache.live.emplace(p, size);
  } catch (...) {
    std::free(p);
    throw;
  }
  return p;
}

// Frees what alloc_array returned (into the cache of freed arrays when it is of a cached size).
inline void free_array(void* p) noexcept {
  auto& cache = detail::array_cache();
  std::lock_guard<std::mutex> lock(cache.m);
  const auto it = cache.live.find(p);
  if (it == cache.live.end()) return std::free(p);
  const std::size_t size = it->second;
  cache.live.erase(it);
  try {
    cache.kept.emplace_back(p, size);
  } catch (...) {
    return std::free(p);
  }
  cache.kept_bytes += size;
  while (cache.kept_bytes > kKeptArrayBytes) {
    std::free(cache.kept.front().first);
    cache.kept_bytes -= cache.kept.front().second;
    cache.kept.erase(cache.kept.begin());
  }
}

template <typename T>
using LargeBuffer = std::unique_ptr<T[], LargeFree>;

template <typename T>
LargeBuffer<T> make_large(std::size_t n, Pages pages = Pages::Huge) {
  return LargeBuffer<T>(static_cast<T*>(alloc_large(n * sizeof(T), pages)));
}

}  // namespace pylstm
