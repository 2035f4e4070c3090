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

// splitmix64 folded over the values: neighbouring seeds, epochs and steps give unrelated streams.
uint64_t mix_seed(std::initializer_list<uint64_t> values);

// A generator for `device` (CPU, or CUDA when LibTorch has it) seeded with `seed`.
at::Generator make_generator(torch::Device device, uint64_t seed);

}  // namespace mnist
