// Array forms of the gate activations, so that tests (and users) can check them against NumPy element by element.
#include "activations.h"

#include "common.h"

namespace pylstm {

template <typename Real>
PYLSTM_VECTOR_CLONES void sigmoid_array(Real* __restrict out, const Real* __restrict x, index_t n) {
  for (index_t k = 0; k < n; ++k) out[k] = act_sigmoid(x[k]);
}

template <typename Real>
PYLSTM_VECTOR_CLONES void tanh_array(Real* __restrict out, const Real* __restrict x, index_t n) {
  for (index_t k = 0; k < n; ++k) out[k] = act_tanh(x[k]);
}

template void sigmoid_array<float>(float*, const float*, index_t);
template void sigmoid_array<double>(double*, const double*, index_t);
template void tanh_array<float>(float*, const float*, index_t);
template void tanh_array<double>(double*, const double*, index_t);

}  // namespace pylstm
