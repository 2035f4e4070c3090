// rng: every random draw in training is a pure function of (seed, epoch, step, stream): the data
// order, dropout masks and augmentation. A resumed run therefore needs no saved RNG state and
// replays exactly the draws of a run that went straight through, on any device.
#pragma once
#include <cstdint>
#include <initializer_list>

#include <torch/torch.h>

namespace mnist {

// What a draw is for: each gets its own stream for the same (seed, epoch, step).
enum class Stream : uint64_t { dropout = 1, augmentation = 2 };  // the data order: epoch_permutation (train.h)

// splitmix64's finaliser (Steele, Lea and Flood): a bijection of 64-bit words whose outputs for
// neighbouring inputs look unrelated.
inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;  // splitmix64's increment: 2^64 / the golden ratio
inline constexpr uint64_t kSeedBasis = 0x632BE59BD9B4E019ull;    // what the seeds are mixed into

// splitmix64 folded over the values: neighbouring seeds, epochs and steps give unrelated streams.
uint64_t mix_seed(std::initializer_list<uint64_t> values);

// A generator for `device` (CPU, or CUDA when LibTorch has it) seeded with `seed`.
at::Generator make_generator(torch::Device device, uint64_t seed);

}  // namespace mnist
