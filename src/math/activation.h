// activation: Keras's activations, each written once: the value a = f(z) and the derivative
// written from the output a (every one here is a function of a); their names are
// activation_names.h. The scalar forms below are what the fused CPU loops (fused.cpp) and the CUDA
// kernels (fused_kernels.h) call; model.cpp's activate() is the tensor form of the autograd step,
// which computes the same values (tests/test_activation.cpp compares them).
//
// To add an activation: a value in the enum and a row in kActivations (activation_names.h), a case
// in with_activation, its formulas in activate and activation_grad, and its tensor form in
// model.cpp's activate().
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "math/activation_names.h"
#include "math/host_device.h"

namespace mnist {

// Calls f(std::integral_constant<Activation, a>{}): code written once for every activation is
// compiled once per activation, with `a` a constant inside it (so a loop over a row vectorises).
template <Activation A>
using ActivationConstant = std::integral_constant<Activation, A>;
template <class F>
MNIST_HD inline auto with_activation(Activation a, F&& f) {
  switch (a) {
    case Activation::relu: return f(ActivationConstant<Activation::relu>{});
    case Activation::sigmoid: return f(ActivationConstant<Activation::sigmoid>{});
    case Activation::softmax: return f(ActivationConstant<Activation::softmax>{});
    case Activation::tanh: return f(ActivationConstant<Activation::tanh>{});
    default: return f(ActivationConstant<Activation::linear>{});
  }
}

// a = f(z). Softmax is not element-wise: its scalar form is the identity, and the code that meets
// a softmax (the loss on its logits, predicted_class) takes the row whole.
template <Activation A>
MNIST_HD inline float activate(float z) {
  if constexpr (A == Activation::relu) return z > 0 ? z : 0;
  if constexpr (A == Activation::sigmoid) return 1.0f / (1.0f + expf(-z));
  if constexpr (A == Activation::tanh) return tanhf(z);
  return z;
}

// d loss / d z from d = d loss / d a and the output a, in the order of operations of LibTorch's
// autograd (relu: a > 0; sigmoid: d (1 - a) a; tanh: d (1 - a^2)).
template <Activation A>
MNIST_HD inline float activation_grad(float d, float a) {
  if constexpr (A == Activation::relu) return a > 0 ? d : 0;
  if constexpr (A == Activation::sigmoid) return d * (1 - a) * a;
  if constexpr (A == Activation::tanh) return d * (1 - a * a);
  return d;
}

MNIST_HD inline float activate(float z, Activation a) {
  return with_activation(a, [&](auto act) { return activate<decltype(act)::value>(z); });
}
MNIST_HD inline float activation_grad(float d, float out, Activation a) {
  return with_activation(a, [&](auto act) { return activation_grad<decltype(act)::value>(d, out); });
}

// The class Keras's accuracy counts for one sample: the argmax of its logits z[0..classes) through
// `output`, the first on ties. Order-preserving as the outputs are, they still tie where they
// saturate: sigmoids at 1.0f, softmax's exp(z - max) where it underflows to 0.
MNIST_HD inline int64_t predicted_class(const float* z, int64_t classes, Activation output) {
  float mx = z[0];
  for (int64_t c = 1; c < classes; ++c) mx = z[c] > mx ? z[c] : mx;
  int64_t best = 0;
  float best_out = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const float out = output == Activation::softmax ? expf(z[c] - mx) : activate(z[c], output);
    if (c == 0 || out > best_out) best = c, best_out = out;
  }
  return best;
}

}  // namespace mnist
