// Chooses the table of kernels once per process: the best ISA level this CPU runs, capped by PYLSTM_ISA.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <stdexcept>
#if defined(__unix__)
#include <unistd.h>
#endif

#include "kernels.h"

namespace pylstm {

namespace baseline { const KernelTable& table(); }
#if defined(PYLSTM_HAVE_X86_LEVELS)
namespace avx2 { const KernelTable& table(); }
namespace avx512 { const KernelTable& table(); }
#endif

namespace {

struct Level {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
};

#if defined(PYLSTM_HAVE_X86_LEVELS)
// x86-64-v4 and x86-64-v3, feature by feature, as the compiler flags of avx512.cpp and avx2.cpp assume them.
// __builtin_cpu_supports also checks that the OS saves the vector registers (XCR0).
bool cpu_has_v4() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
}
bool cpu_has_v3() {
  __builtin_cpu_init();
  const bool core = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#if defined(__clang__) && __clang_major__ < 18
  return core;  // older clang does not know these names; every CPU with AVX2, FMA and BMI2 has them
#else
  return core && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe") && __builtin_cpu_supports("lzcnt");
#endif
}
#endif
bool always() { return true; }

// Best first; the last one runs on every CPU of the architecture.
const Level kLevels[] = {
#if defined(PYLSTM_HAVE_X86_LEVELS)
    {"avx512", avx512::table, [] { return cpu_has_v4() && cpu_has_v3(); }},
    {"avx2", avx2::table, cpu_has_v3},
#endif
    {nullptr, baseline::table, always},  // named by baseline.cpp: "sse2" on x86-64, "generic" elsewhere
};

const char* level_name(const Level& l) { return l.name ? l.name : baseline::table().isa; }

// Lower case, without surrounding blanks.
std::string normalise(const char* s) {
  std::string r(s);
  for (char& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const auto first = r.find_first_not_of(" \t\n"), last = r.find_last_not_of(" \t\n");
  return first == std::string::npos ? std::string() : r.substr(first, last - first + 1);
}

std::string join(const std::vector<std::string>& v) {
  std::string r;
  for (const auto& s : v) r += (r.empty() ? "" : ", ") + s;
  return r;
}

const KernelTable& choose_table(const char* cap) {
  const std::string name = choose_isa(cap, isa_available());
  for (const Level& l : kLevels)
    if (name == level_name(l)) return l.table();
  throw std::logic_error("pylstm: no kernel table named " + name);
}

}  // namespace

std::vector<std::string> isa_available() {
  std::vector<std::string> r;
  for (const Level& l : kLevels)
    if (l.supported()) r.push_back(level_name(l));
  return r;
}

std::string choose_isa(const char* cap, const std::vector<std::string>& available) {
  if (available.empty()) throw std::logic_error("pylstm: no ISA level available");
  const std::string want = cap ? normalise(cap) : std::string();
  if (want.empty()) return available.front();
  std::vector<std::string> known;
  for (const Level& l : kLevels) known.push_back(level_name(l));
  const auto at = std::find(known.begin(), known.end(), want);
  if (at == known.end())
    throw std::invalid_argument("PYLSTM_ISA=" + std::string(cap) + " is not a level pylstm knows; valid values: " +
                                join(known) + " (or unset for the best this CPU runs)");
  // Every level below one the CPU runs is run too, so a cap the CPU runs is exactly the level chosen.
  if (std::find(available.begin(), available.end(), want) != available.end()) return want;
  throw std::invalid_argument("PYLSTM_ISA=" + std::string(cap) + " asks for a level this CPU cannot run; it runs: " +
                              join(available));
}

const KernelTable& kernels() {
  // A function-local static: initialised once, thread-safely; if the choice throws, the next call tries again.
  static const KernelTable& table = choose_table(std::getenv("PYLSTM_ISA"));
  return table;
}

namespace detail {

bool weights_beyond_l2(index_t bytes) {
  static const index_t l2 = [] {
    long v = -1;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    v = sysconf(_SC_LEVEL2_CACHE_SIZE);  // glibc reads it from CPUID; 0 or -1 where unknown
#endif
    return v > 0 ? index_t(v) : index_t(1) << 20;
  }();
  return bytes > l2 / 4 * 3;
}

}  // namespace detail

}  // namespace pylstm
