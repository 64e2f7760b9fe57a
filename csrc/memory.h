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
#include <memory>
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

// `bytes` of uninitialised memory, 64-byte aligned; from 1 MB on, 2 MB aligned, rounded up to whole 2 MB pages and
// marked for huge pages. Throws std::bad_alloc.
inline void* alloc_large(std::size_t bytes) {
  const bool huge = bytes >= (kHugePage >> 1);
  const std::size_t align = huge ? kHugePage : 64;
  const std::size_t size = huge ? (bytes + kHugePage - 1) / kHugePage * kHugePage : (bytes + 63) / 64 * 64;
  void* p = nullptr;
  if (posix_memalign(&p, align, size ? size : 64) != 0) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) madvise(p, size, MADV_HUGEPAGE);  // advice only: without THP the pages stay small
#endif
  return p;
}

template <typename T>
using LargeBuffer = std::unique_ptr<T[], LargeFree>;

template <typename T>
LargeBuffer<T> make_large(std::size_t n) {
  return LargeBuffer<T>(static_cast<T*>(alloc_large(n * sizeof(T))));
}

}  // namespace pylstm
