// sparse_categorical_crossentropy against values computed by hand (in double) for each semantics.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/loss.h"

using namespace mnist;

namespace {
const std::vector<double> kZ = {1.5, -0.5, 0.25, 3.0};  // one sample's logits, 4 classes
constexpr int64_t kLabel = 2;

torch::Tensor logits(const std::vector<double>& z) {
  return torch::tensor(z, torch::kDouble).view({1, static_cast<int64_t>(z.size())});
}
double loss(const std::vector<double>& z, Activation act, LossSemantics sem, bool from_logits = false) {
  LossConfig c;
  c.semantics = sem;
  c.from_logits = from_logits;
  return sparse_categorical_crossentropy(logits(z), torch::tensor({kLabel}), act, c).item<double>();
}
double softmax_ce(const std::vector<double>& z, int64_t y) {
  double sum = 0;
  for (double v : z) sum += std::exp(v);
  return -std::log(std::exp(z[static_cast<size_t>(y)]) / sum);
}
double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
}  // namespace

TEST(Loss, TensorflowSemanticsIsSoftmaxCrossEntropyOnThePreSigmoidLogits) {
  // Keras/TF: the sigmoid output's cached _keras_logits go to softmax cross-entropy.
  EXPECT_NEAR(loss(kZ, Activation::sigmoid, LossSemantics::tensorflow), softmax_ce(kZ, kLabel), 1e-12);
  EXPECT_NEAR(loss(kZ, Activation::softmax, LossSemantics::tensorflow), softmax_ce(kZ, kLabel), 1e-12);
}

TEST(Loss, RenormalizedSemanticsDividesTheSigmoidsByTheirSum) {
  double sum = 0;
  for (double v : kZ) sum += sigmoid(v);
  const double expected = -std::log(sigmoid(kZ[kLabel]) / sum);
  EXPECT_NEAR(loss(kZ, Activation::sigmoid, LossSemantics::renormalized), expected, 1e-12);
  // Two different numbers: the semantics switch matters for the paper's sigmoid output.
  EXPECT_GT(std::fabs(expected - softmax_ce(kZ, kLabel)), 0.1);
  // For a softmax output both semantics agree.
  EXPECT_NEAR(loss(kZ, Activation::softmax, LossSemantics::renormalized), softmax_ce(kZ, kLabel), 1e-12);
}

TEST(Loss, RenormalizedClipsAtKerasEpsilon) {
  // The label's sigmoid is ~e^-40: p is clipped to 1e-7, so the loss is -log(1e-7).
  const std::vector<double> z = {5.0, 5.0, -40.0, 5.0};
  EXPECT_NEAR(loss(z, Activation::sigmoid, LossSemantics::renormalized), -std::log(1e-7), 1e-9);
}

TEST(Loss, RenormalizedIsNaNWhenEverySigmoidUnderflows) {
  // float32 sigmoid(-200) == 0 for every unit: 0 / 0, as Keras on JAX/torch computes it.
  LossConfig c;
  c.semantics = LossSemantics::renormalized;
  const auto z = torch::full({1, 4}, -200.0f);
  EXPECT_TRUE(std::isnan(sparse_categorical_crossentropy(z, torch::tensor({kLabel}), Activation::sigmoid, c).item<float>()));
  // The tensorflow semantics is finite on the same logits.
  c.semantics = LossSemantics::tensorflow;
  EXPECT_NEAR(sparse_categorical_crossentropy(z, torch::tensor({kLabel}), Activation::sigmoid, c).item<float>(), std::log(4.0), 1e-6);
}

TEST(Loss, FromLogitsUsesTheOutputsAsLogits) {
  EXPECT_NEAR(loss(kZ, Activation::linear, LossSemantics::tensorflow, true), softmax_ce(kZ, kLabel), 1e-12);
  EXPECT_NEAR(loss(kZ, Activation::linear, LossSemantics::renormalized, true), softmax_ce(kZ, kLabel), 1e-12);
}

TEST(Loss, MeanOverTheBatch) {
  LossConfig c;
  const auto z = torch::tensor({1.0, 2.0, 0.0, -1.0}, torch::kDouble).view({2, 2});
  const double l = sparse_categorical_crossentropy(z, torch::tensor({0L, 1L}), Activation::softmax, c).item<double>();
  EXPECT_NEAR(l, (softmax_ce({1.0, 2.0}, 0) + softmax_ce({0.0, -1.0}, 1)) / 2.0, 1e-12);
}

TEST(Loss, LabelSmoothingMixesInTheUniformTargetInBothSemantics) {
  const torch::Tensor z = torch::randn({6, 10}, torch::kDouble), y = torch::tensor({0, 3, 9, 2, 2, 7}, torch::kLong);
  LossConfig c;
  c.label_smoothing = 0.2;
  for (auto semantics : {LossSemantics::tensorflow, LossSemantics::renormalized}) {
    c.semantics = semantics;
    const torch::Tensor p = semantics == LossSemantics::tensorflow ? torch::softmax(z, 1) : torch::sigmoid(z) / torch::sigmoid(z).sum(1, true);
    const torch::Tensor target = torch::one_hot(y, 10).to(torch::kDouble) * 0.8 + 0.02;  // y (1 - ls) + ls / 10
    const double expected = -(target * p.log()).sum(1).mean().item<double>();
    EXPECT_NEAR(sparse_categorical_crossentropy(z, y, Activation::sigmoid, c).item<double>(), expected, 1e-12);
  }
}
