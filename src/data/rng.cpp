// rng: splitmix64 seed mixing and per-device generators.
#include "data/rng.h"

#ifdef MNIST_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

#include <stdexcept>

namespace mnist {

uint64_t mix_seed(std::initializer_list<uint64_t> values) {
  uint64_t z = kSeedBasis;
  for (uint64_t v : values) z = splitmix64(z + v * kGoldenGamma + kGoldenGamma);
  return z;
}

at::Generator make_generator(torch::Device device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
#ifdef MNIST_WITH_CUDA
  if (device.is_cuda()) {
    at::Generator gen = at::cuda::detail::createCUDAGenerator(device.has_index() ? device.index() : 0);
    gen.set_current_seed(seed);
    return gen;
  }
#endif
  throw std::runtime_error("no random number generator for device " + device.str() + " in this build");
}

}  // namespace mnist
