// float_env: FTZ and DAZ through the SSE control register (MXCSR), on every thread that computes.
#include "train/float_env.h"

#include <ATen/Parallel.h>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define MNIST_HAS_MXCSR 1
#endif

namespace mnist {
namespace {

#ifdef MNIST_HAS_MXCSR
constexpr unsigned int kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;  // MXCSR bits 15 and 6

// Sets MXCSR on this thread and on each intra-op worker: one piece of work per thread, and
// at::parallel_for gives thread t piece t.
void set_everywhere(unsigned int mxcsr) {
  _mm_setcsr(mxcsr);
  const int64_t threads = at::get_num_threads();
  at::parallel_for(0, threads, /*grain_size=*/1, [mxcsr](int64_t, int64_t) { _mm_setcsr(mxcsr); });
}
#endif

}  // namespace

FlushDenormals::FlushDenormals() {
#ifdef MNIST_HAS_MXCSR
  saved_ = _mm_getcsr();
  set_everywhere(saved_ | kFlushToZero | kDenormalsAreZero);
#endif
}

FlushDenormals::~FlushDenormals() {
#ifdef MNIST_HAS_MXCSR
  set_everywhere(saved_);
#endif
}

}  // namespace mnist
