// Synthetic labelled images for the unit tests (easy to learn, different for every seed), and how
// far apart two runs' tensors are.
#pragma once
#include <torch/torch.h>

#include "data/data.h"

// n images with labels i % 10: uniform noise in [0, noise), and class k's 4x4 block, at a place
// of its own, set to `block`.
inline mnist::Split class_blocks(int64_t n, uint64_t seed, double noise, double block) {
  auto gen = at::detail::createCPUGenerator(seed);
  mnist::Split s{torch::rand({n, 1, 28, 28}, gen) * noise, torch::arange(n, torch::kLong) % 10};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = i % 10;
    s.images[i].narrow(1, 2 + (k % 5) * 5, 4).narrow(2, 4 + (k / 5) * 12, 4).fill_(block);
  }
  return s;
}

// The largest difference relative to the largest value of `want`; a tensor of zeros on both sides
// (an optimizer slot the rule does not use, such as sgd's second) is 0 apart.
inline double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  const double scale = want.abs().max().item<double>();
  return (got - want).abs().max().item<double>() / (scale > 0 ? scale : 1.0);
}
