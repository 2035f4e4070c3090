// Model building from the config: Keras parameter counts, summary, initialisers, shape errors.
#include <gtest/gtest.h>

#include <cmath>

#include "config/config.h"
#include "config/errors.h"
#include "model/model.h"

using namespace mnist;

namespace {
ModelConfig paper_layers(Activation out = Activation::sigmoid) {
  return ModelConfig{{{"flatten", FlattenSpec{}},
                      {"dense", DenseSpec{100, Activation::relu, true}},
                      {"dense_1", DenseSpec{10, out, true}}}};
}
}  // namespace

TEST(Model, PaperModelHas79510ParametersAndAKerasSummary) {
  Model m(paper_layers(), kImageShape, 0);
  EXPECT_EQ(m->parameter_count(), 79510);
  const std::string s = m->summary("paper");
  for (const char* part : {"flatten (Flatten)", "(None, 784)", "dense (Dense)", "(None, 100)", "78500", "dense_1 (Dense)",
                           "(None, 10)", "1010", "Total params: 79,510", "Trainable params: 79,510"})
    EXPECT_NE(s.find(part), std::string::npos) << part << "\n" << s;
}

TEST(Model, GlorotUniformKernelsAndZeroBiases) {
  Model m(paper_layers(), kImageShape, 42);
  for (const auto& p : m->named_parameters()) {
    const auto& t = p.value();
    if (p.key().find("bias") != std::string::npos) {
      EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << p.key();
      continue;
    }
    const double limit = std::sqrt(6.0 / static_cast<double>(t.size(0) + t.size(1)));
    EXPECT_LE(t.abs().max().item<double>(), limit) << p.key();
    EXPECT_GT(t.abs().max().item<double>(), 0.95 * limit) << p.key();  // fills the range
    // U(-l, l) has variance l^2 / 3.
    EXPECT_NEAR(t.var().item<double>(), limit * limit / 3.0, 0.1 * limit * limit / 3.0) << p.key();
    EXPECT_NEAR(t.mean().item<double>(), 0.0, 0.05 * limit) << p.key();
  }
}

TEST(Model, SameSeedSameWeightsOtherSeedOtherWeights) {
  Model a(paper_layers(), kImageShape, 7), b(paper_layers(), kImageShape, 7), c(paper_layers(), kImageShape, 8);
  EXPECT_TRUE(a->parameters()[0].equal(b->parameters()[0]));
  EXPECT_FALSE(a->parameters()[0].equal(c->parameters()[0]));
}

TEST(Model, ForwardAppliesTheOutputActivationToTheLogits) {
  Model m(paper_layers(), kImageShape, 0);
  const auto x = torch::rand({4, 1, 28, 28});
  const auto z = m->logits(x);
  ASSERT_EQ(z.sizes(), (torch::IntArrayRef{4, 10}));
  EXPECT_TRUE(m->forward(x).allclose(torch::sigmoid(z)));
  Model s(paper_layers(Activation::softmax), kImageShape, 0);
  EXPECT_TRUE(s->forward(x).sum(1).allclose(torch::ones({4})));
}

TEST(Model, DenseOnAnImageAsksForFlatten) {
  ModelConfig cfg{{{"dense", DenseSpec{10, Activation::softmax, true}}}};
  try {
    Model m(cfg, kImageShape, 0);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.path, "model.layers[0]");
    EXPECT_NE(std::string(e.what()).find("(None, 28, 28, 1)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Flatten"), std::string::npos) << e.what();
  }
}
