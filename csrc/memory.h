// Large scratch and packed-weight buffers, backed by transparent huge pages where the OS offers them.
//
// The fused loops keep each thread's packed weights and gate rows in its L2 cache, which they nearly fill at the
// benchmark sizes (1.4 MB of packed weights for an LSTM with I = 96, H = 256). With 4 KB pages the buffers' physical
// pages land in L2 sets at random, and whole processes ran 35 % slower when they collided (2-core Zen 5, 2026-12-04:
// the same LSTM forward + backward took 16.9 ms in some processes and 12.2 ms in others). A 2 MB page is
// physically contiguous, so the buffer fills the sets evenly, in every process. Linux gives one to an aligned region
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
