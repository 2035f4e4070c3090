// The Keras layers beyond Dense: TensorFlow's padding arithmetic, Keras's weight layouts and
// channels-last Flatten, BatchNormalization's Keras statistics, Dropout, shape errors, and the
// TorchScript export of a model that uses every layer.
#include <gtest/gtest.h>

#include "config/errors.h"
#include "helpers.h"
#include "interop/export.h"
#include "interop/keras_import.h"
#include "model/model.h"

using namespace mnist;
using testing_helpers::TempDir;

namespace {

Config config_of(const std::string& layers, const std::string& training = "{}") {
  return parse_config_text(R"({"model": {"layers": )" + layers + R"(}, "training": )" + training + "}", "test");
}

// The model's layers up to (not including) the last, as a function of the input.
torch::Tensor hidden(Model& m, const torch::Tensor& x, size_t upto) {
  torch::Tensor h = x;
  for (size_t i = 0; i < upto; ++i) h = activate(m->layers()[i]->forward(h), m->layers()[i]->activation);
  return h;
}

const char* kDenseOut = R"({"type": "Dense", "units": 10, "activation": "softmax"})";

}  // namespace

TEST(Layers, ShapesFollowTensorFlowPaddingRules) {
  const Config c = config_of(std::string(R"([
      {"type": "Conv2D", "filters": 3, "kernel_size": 3},
      {"type": "Conv2D", "filters": 4, "kernel_size": [3, 5], "strides": 2, "padding": "same"},
      {"type": "MaxPooling2D", "pool_size": 3, "padding": "same"},
      {"type": "AveragePooling2D", "pool_size": 2, "strides": 1},
      {"type": "GlobalAveragePooling2D"}, )") + kDenseOut + "]");
  Model m(c.model, kImageShape, 0);
  const std::vector<Shape> expected = {{26, 26, 3}, {13, 13, 4}, {5, 5, 4}, {4, 4, 4}, {4}, {10}};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(m->layers()[i]->output_shape, expected[i]) << i;
  EXPECT_EQ(m->forward(torch::rand({2, 1, 28, 28})).sizes(), (torch::IntArrayRef{2, 10}));
  EXPECT_NE(m->summary("t").find("(None, 13, 13, 4)"), std::string::npos);
}

TEST(Layers, SamePaddingWithStridePutsTheOddPixelAfterAsTensorFlowDoes) {
  // 28 wide, kernel 3, stride 2: 14 outputs need 29 inputs, so TensorFlow pads 0 before, 1 after.
  const Config c = config_of(std::string(R"([{"type": "Conv2D", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"},
      {"type": "Flatten"}, )") + kDenseOut + "]");
  Model m(c.model, kImageShape, 1);
  const torch::Tensor x = torch::rand({2, 1, 28, 28});
  const auto& conv = m->named_parameters();
  const torch::Tensor expected = torch::conv2d(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0), conv["conv2d.weight"], conv["conv2d.bias"], 2);
  EXPECT_TRUE(torch::allclose(m->layers()[0]->forward(x), expected));
}

TEST(Layers, SamePaddingSplitEvenlyIsLibTorchsPadding) {
  // Kernel 3, stride 1: 2 pixels of padding, 1 on each side, given to conv2d without a padded copy.
  const Config c = config_of(std::string(R"([{"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same"},
      {"type": "Flatten"}, )") + kDenseOut + "]");
  Model m(c.model, kImageShape, 1);
  const torch::Tensor x = torch::rand({2, 1, 28, 28});
  const auto& conv = m->named_parameters();
  const torch::Tensor expected = torch::conv2d(torch::constant_pad_nd(x, {1, 1, 1, 1}, 0), conv["conv2d.weight"], conv["conv2d.bias"]);
  EXPECT_TRUE(torch::allclose(m->layers()[0]->forward(x), expected, 1e-5, 1e-6));
  EXPECT_EQ(m->layers()[0]->output_shape, (Shape{28, 28, 2}));
}

TEST(Layers, KerasConvKernelLayoutAndChannelsLastFlatten) {
  // A Keras kernel (kh, kw, in, out) whose only 1 is at [0, 1, 0, 2]: output channel 2 at (i, j)
  // is input (i, j + 1), under padding "valid".
  const Config c = config_of(std::string(R"([{"type": "Conv2D", "filters": 3, "kernel_size": 2, "use_bias": false},
      {"type": "Flatten"}, )") + kDenseOut + "]");
  nlohmann::json kernel = nlohmann::json::array();
  for (int a = 0; a < 2; ++a) {
    nlohmann::json row = nlohmann::json::array();
    for (int b = 0; b < 2; ++b) row.push_back({{0.0, 0.0, a == 0 && b == 1 ? 1.0 : 0.0}});
    kernel.push_back(row);
  }
  std::vector<float> dense_kernel(27 * 27 * 3 * 10, 0.0f);
  // Keras flattens (H, W, C): index (i * 27 + j) * 3 + ch. Unit 7 reads channel 2 at (0, 0).
  dense_kernel[(0 * 27 + 0) * 3 * 10 + 2 * 10 + 7] = 1.0f;
  nlohmann::json dense = nlohmann::json::array();
  for (int r = 0; r < 27 * 27 * 3; ++r)
    dense.push_back(std::vector<float>(dense_kernel.begin() + r * 10, dense_kernel.begin() + r * 10 + 10));
  const nlohmann::json weights = {kernel, dense, std::vector<float>(10, 0.0f)};
  Model m = model_with_params(c, parse_keras_weights(weights.dump(), c, "w.json"), "test");
  torch::Tensor x = torch::zeros({1, 1, 28, 28});
  x[0][0][0][1] = 5.0;  // seen by output channel 2 at (0, 0)
  const torch::Tensor conv = m->layers()[0]->forward(x);
  EXPECT_FLOAT_EQ(conv[0][2][0][0].item<float>(), 5.0f);
  EXPECT_FLOAT_EQ(conv.abs().sum().item<float>(), 5.0f);
  EXPECT_FLOAT_EQ(m->logits(x)[0][7].item<float>(), 5.0f);  // the Dense read it where Keras's would
}

TEST(Layers, SamePoolingIgnoresThePadding) {
  // Stride 2 pads one pixel after (an odd split), stride 1 one on each side (an even split).
  for (int stride : {2, 1}) {
    SCOPED_TRACE(stride);
    const std::string window = R"("padding": "same", "pool_size": 3, "strides": )" + std::to_string(stride);
    const Config c = config_of("[{\"type\": \"MaxPooling2D\", " + window + "}, {\"type\": \"AveragePooling2D\", " + window +
                               R"(}, {"type": "Flatten"}, )" + kDenseOut + "]");
    Model m(c.model, kImageShape, 0);
    const torch::Tensor negative = -torch::rand({1, 1, 28, 28}) - 1;  // a zero pad would win every max
    EXPECT_LT(m->layers()[0]->forward(negative).max().item<float>(), -1.0f);
    const int64_t size = 28 / stride;
    const torch::Tensor ones = torch::ones({1, 1, size, size});  // a counted pad would pull edges below 1
    EXPECT_TRUE(torch::allclose(m->layers()[1]->forward(ones), torch::ones({1, 1, size / stride, size / stride})));
  }
}

TEST(Layers, BatchNormalizationUsesKerasMomentumAndTheBiasedBatchVariance) {
  const Config c = config_of(std::string(R"([{"type": "Flatten"}, {"type": "BatchNormalization"}, )") + kDenseOut + "]");
  Model m(c.model, kImageShape, 0);
  const torch::Tensor x = torch::rand({16, 1, 28, 28}) * 3;
  m->train();
  const torch::Tensor y = hidden(m, x, 2);
  const torch::Tensor flat = x.flatten(1);
  const auto var = flat.var(0, /*unbiased=*/false), mean = flat.mean(0);
  EXPECT_TRUE(torch::allclose(y, (flat - mean) / torch::sqrt(var + 1e-3), 1e-4, 1e-4));
  const auto& buffers = m->named_buffers();
  EXPECT_TRUE(torch::allclose(buffers["batch_normalization.running_mean"], 0.01 * mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(buffers["batch_normalization.running_var"], 0.99 + 0.01 * var, 1e-5, 1e-6));
  m->eval();
  const auto rm = buffers["batch_normalization.running_mean"], rv = buffers["batch_normalization.running_var"];
  EXPECT_TRUE(torch::allclose(hidden(m, x, 2), (flat - rm) / torch::sqrt(rv + 1e-3), 1e-4, 1e-4));
  EXPECT_NE(m->summary("t").find("Non-trainable params: 1,568"), std::string::npos) << m->summary("t");
}

TEST(Layers, DropoutScalesInTrainingFollowsItsSeedAndVanishesInEvaluation) {
  const Config c = config_of(std::string(R"([{"type": "Flatten"}, {"type": "Dropout", "rate": 0.25}, )") + kDenseOut + "]");
  Model m(c.model, kImageShape, 0);
  const torch::Tensor x = torch::ones({64, 1, 28, 28});
  m->train();
  m->reseed_noise(torch::kCPU, 7);
  const torch::Tensor a = hidden(m, x, 2);
  m->reseed_noise(torch::kCPU, 7);
  EXPECT_TRUE(hidden(m, x, 2).equal(a));
  m->reseed_noise(torch::kCPU, 8);
  EXPECT_FALSE(hidden(m, x, 2).equal(a));
  const double dropped = a.eq(0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(dropped, 0.25, 0.01);
  EXPECT_TRUE(torch::allclose(a.masked_select(a.ne(0)), torch::full({1}, 1 / 0.75)));
  m->eval();
  EXPECT_TRUE(hidden(m, x, 2).equal(x.flatten(1)));
}

TEST(Layers, ShapeErrorsNameTheLayer) {
  auto error = [](const std::string& layers) {
    try {
      Model m(config_of(layers).model, kImageShape, 0);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error(std::string(R"([{"type": "Flatten"}, {"type": "Conv2D", "filters": 2, "kernel_size": 3}, )") + kDenseOut + "]")
                .find("model.layers[1]: Conv2D needs an image input (height, width, channels) but receives (None, 784)"),
            std::string::npos);
  EXPECT_NE(error(std::string(R"([{"type": "Conv2D", "filters": 2, "kernel_size": 29}, {"type": "Flatten"}, )") + kDenseOut + "]")
                .find("model.layers[0]: Conv2D window [29, 29] does not fit its input (None, 28, 28, 1)"),
            std::string::npos);
  EXPECT_NE(error(std::string(R"([{"type": "Reshape", "target_shape": [5, -1]}, )") + kDenseOut + "]").find("must be [features] or"),
            std::string::npos);
  EXPECT_NE(error(std::string(R"([{"type": "Reshape", "target_shape": [5, 5, -1]}, {"type": "Flatten"}, )") + kDenseOut + "]")
                .find("model.layers[0].target_shape: cannot reshape (None, 28, 28, 1) (784 values) to [5, 5, -1]"),
            std::string::npos);
}

TEST(Layers, TorchScriptExportOfEveryLayerMatchesTheModel) {
  const Config c = config_of(std::string(R"([
      {"type": "Reshape", "target_shape": [14, 56, 1]},
      {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"},
      {"type": "BatchNormalization", "center": false},
      {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
      {"type": "MaxPooling2D", "padding": "same", "pool_size": 3},
      {"type": "Conv2D", "filters": 6, "kernel_size": 2, "activation": "tanh", "use_bias": false},
      {"type": "AveragePooling2D", "padding": "same", "pool_size": 3, "strides": 1},
      {"type": "AveragePooling2D", "padding": "same", "pool_size": 2, "strides": 1},
      {"type": "Dropout", "rate": 0.5},
      {"type": "Flatten"}, {"type": "Dense", "units": 12}, {"type": "BatchNormalization"},
      {"type": "Activation", "activation": "sigmoid"}, )") + kDenseOut + "]");
  Model m(c.model, kImageShape, 3);
  {  // non-trivial moving statistics
    m->train();
    m->reseed_noise(torch::kCPU, 1);
    m->forward(torch::rand({32, 1, 28, 28}));
  }
  m->eval();
  TempDir tmp;
  export_model(*m, c, tmp / "model.pt");
  torch::jit::Module loaded = torch::jit::load((tmp / "model.pt").string());
  const torch::Tensor x = torch::rand({5, 1, 28, 28});
  EXPECT_TRUE(torch::allclose(loaded.forward({x}).toTensor(), m->forward(x), 1e-5, 1e-6));
  LoadedModel back = load_model((tmp / "model.pt").string());
  back.model->eval();
  EXPECT_TRUE(back.model->forward(x).equal(m->forward(x)));  // moving statistics came back too
}
