// Process-wide settings of the core: the thread count and what BLAS it runs on.
#include <stdexcept>

#include "blas.h"

namespace pylstm {

int get_num_threads() { return scipy_openblas_get_num_threads(); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
  scipy_openblas_set_num_threads(n);
}

const char* blas_config() { return scipy_openblas_get_config(); }

}  // namespace pylstm
