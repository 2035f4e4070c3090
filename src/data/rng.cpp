// rng: splitmix64 seed mixing and per-device generators.
#include "data/rng.h"

#ifdef MNIST_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

#include <stdexcept>

namespace mnist {

uint64_t mix_seed(std::initializer_list<uint64_t> values) {
  uint64_t z = 0x632BE59BD9B4E019ull;
  for (uint64_t v : values) {
    z += v * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
  }
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
