// activation.h's scalar formulas (the fused CPU loops and the CUDA kernels) against the tensor
// form the autograd step uses (model.h activate and LibTorch's autograd), value and gradient.
#include <gtest/gtest.h>

#include "math/activation.h"
#include "model/model.h"

using namespace mnist;

namespace {

// Values over the range that matters, both signs, with exact zeros and saturating values.
torch::Tensor probe_values() {
  auto gen = at::detail::createCPUGenerator(1);
  torch::Tensor z = torch::randn({4099}, gen) * 4;
  z.narrow(0, 0, 8).copy_(torch::tensor({0.0f, -0.0f, 1e-30f, -1e-30f, 30.0f, -30.0f, 100.0f, -100.0f}));
  return z;
}

}  // namespace

TEST(Activation, ConfigNamesAndTorchScriptComeFromOneTable) {
  for (int i = 0; i < static_cast<int>(std::size(kActivations)); ++i)
    EXPECT_EQ(static_cast<int>(kActivations[i].value), i) << kActivations[i].name;  // info() indexes it
  EXPECT_EQ(to_string(Activation::relu), "relu");
  EXPECT_STREQ(info(Activation::sigmoid).torchscript, "torch.sigmoid(x)");
}

// The element-wise activations: the scalar value and the gradient from the output, against
// model.h's tensor activate() and LibTorch's autograd through it. The gradients are written in
// autograd's order of operations, so they agree bit for bit, but for tanh's: LibTorch's CPU
// kernel fuses 1 - a^2 into one FMA where the CPU has one, so it may round once less. relu's and
// linear's values agree bit for bit; sigmoid and tanh take expf/tanhf on one side and LibTorch's
// vectorised exp/tanh on the other, which agree to a few ulps.
TEST(Activation, ScalarFormsMatchTheTensorFormsAndAutograd) {
  const torch::Tensor z0 = probe_values();
  for (const Activation a : {Activation::linear, Activation::relu, Activation::sigmoid, Activation::tanh}) {
    SCOPED_TRACE(to_string(a));
    torch::Tensor z = z0.clone().requires_grad_();
    const torch::Tensor out = activate(z, a);
    const torch::Tensor upstream = torch::randn_like(z0);
    out.backward(upstream);
    const torch::Tensor want = out.detach();
    torch::Tensor got = torch::empty_like(z0), grad = torch::empty_like(z0);
    for (int64_t i = 0; i < z0.numel(); ++i) {
      got[i] = activate(z0[i].item<float>(), a);
      // From the tensor form's own output, so the gradient's comparison does not inherit the values' ulps.
      grad[i] = activation_grad(upstream[i].item<float>(), want[i].item<float>(), a);
    }
    if (a == Activation::tanh)
      EXPECT_LT((grad - z.grad()).abs().max().item<float>(), 1e-6f * upstream.abs().max().item<float>());
    else
      EXPECT_TRUE(torch::equal(grad, z.grad())) << "max difference " << (grad - z.grad()).abs().max().item<float>();
    if (a == Activation::linear || a == Activation::relu) {
      EXPECT_TRUE(torch::equal(got, want));
    } else {
      EXPECT_LT((got - want).abs().max().item<float>(), 4e-7f);  // a few ulps of values below 1
    }
  }
}

// predicted_class: the argmax of the outputs, the first of tied classes, as Keras's accuracy.
TEST(Activation, PredictedClassIsTheFirstArgmaxOfTheOutputs) {
  const float logits[4] = {20.0f, 30.0f, -5.0f, 30.0f};
  EXPECT_EQ(predicted_class(logits, 4, Activation::linear), 1);  // 30 twice: the first
  EXPECT_EQ(predicted_class(logits, 4, Activation::sigmoid), 0);  // sigmoid(20) and sigmoid(30) are both 1.0f
  const float wide[3] = {0.0f, 200.0f, -200.0f};
  EXPECT_EQ(predicted_class(wide, 3, Activation::softmax), 1);
  const float underflow[3] = {-200.0f, 0.0f, -150.0f};  // exp(z - max) of 0 and 2 both underflow to 0: still class 1
  EXPECT_EQ(predicted_class(underflow, 3, Activation::softmax), 1);
}
