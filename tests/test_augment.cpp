// Augmentation: a near-zero distortion is the identity, the same seed gives the same batch, and
// shifts move the ink by no more than their range.
#include <gtest/gtest.h>

#include "data/augment.h"
#include "data/rng.h"

using namespace mnist;

namespace {

torch::Tensor blob() {
  torch::Tensor x = torch::zeros({8, 1, 28, 28});
  x.narrow(2, 10, 8).narrow(3, 11, 6).fill_(1.0);
  return x;
}

torch::Tensor centre_x(const torch::Tensor& x) {  // per-sample centre of mass along the width
  const torch::Tensor cols = torch::arange(28, torch::kFloat).view({1, 1, 1, 28});
  return (x * cols).sum({1, 2, 3}) / x.sum({1, 2, 3});
}

}  // namespace

TEST(Augment, TinyRangesAreTheIdentityAndSeedsRepeat) {
  AugmentationConfig c;
  c.rotation_range = 1e-6;
  c.zoom_range = 1e-7;
  auto gen = make_generator(torch::kCPU, 1);
  const torch::Tensor x = torch::rand({4, 1, 28, 28});
  EXPECT_TRUE(torch::allclose(augment(x, c, gen), x, 1e-4, 1e-4));

  c.rotation_range = 15;
  c.elastic_alpha = 3;
  auto a = make_generator(torch::kCPU, 9), b = make_generator(torch::kCPU, 9), other = make_generator(torch::kCPU, 10);
  const torch::Tensor ya = augment(x, c, a);
  EXPECT_TRUE(ya.equal(augment(x, c, b)));
  EXPECT_FALSE(ya.equal(augment(x, c, other)));
  EXPECT_EQ(ya.sizes(), x.sizes());
}

TEST(Augment, ShiftsStayWithinTheirRangeAndVary) {
  AugmentationConfig c;
  c.width_shift_range = 3;  // pixels (ImageDataGenerator: values >= 1 are pixels)
  c.fill_mode = FillMode::constant;
  auto gen = make_generator(torch::kCPU, 3);
  const torch::Tensor x = blob();
  const torch::Tensor moved = centre_x(augment(x, c, gen)) - centre_x(x);
  EXPECT_LE(moved.abs().max().item<float>(), 3.0f + 1e-3f);
  EXPECT_GT(moved.abs().max().item<float>(), 0.5f);
  EXPECT_GT(moved.std().item<float>(), 0.1f);  // a different shift per sample
}
