// fused_cuda: fused_kernels.h's step as CUDA kernels on the caller's stream. Compiled only when
// Torch has CUDA; it includes no Torch header, so nvcc sees nothing but the kernels.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "fused/fused_kernels.h"

namespace mnist::kernels {
namespace {

constexpr int kThreads = 256;

template <class F>
__global__ void each_thread(F f, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) f(t);
}

template <class F, class G>
__global__ void then_once(F f, G g, int64_t n) {
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x) f(t);
  __syncthreads();
  if (threadIdx.x == 0) g();
}

void check(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("fused CUDA step: ") + what + ": " + cudaGetErrorString(e));
}

struct CudaLaunch {
  cudaStream_t stream;
  template <class F>
  void each(int64_t n, F f) const {
    if (n == 0) return;
    each_thread<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(f, n);
    check("kernel launch");
  }
  template <class F, class G>
  void then(int64_t n, F f, G g) const {
    then_once<<<1, kThreads, 0, stream>>>(f, g, n);
    check("loss kernel launch");
  }
};

}  // namespace

void fused_step_cuda(const Step& s, void* stream) { fused_step(CudaLaunch{static_cast<cudaStream_t>(stream)}, s); }

}  // namespace mnist::kernels
