// activation_names: which activations exist, and how a config (and Keras) and the exported
// TorchScript name each. What the config schema needs of them; their formulas are activation.h.
#pragma once
#include <string>

namespace mnist {

enum class Activation { linear, relu, sigmoid, softmax, tanh };

struct ActivationInfo {
  Activation value;
  const char* name;         // as a config (and Keras) names it
  const char* torchscript;  // the exported model's expression of x
};
inline constexpr ActivationInfo kActivations[] = {
    {Activation::linear, "linear", "x"},
    {Activation::relu, "relu", "torch.relu(x)"},
    {Activation::sigmoid, "sigmoid", "torch.sigmoid(x)"},
    {Activation::softmax, "softmax", "torch.softmax(x, -1)"},
    {Activation::tanh, "tanh", "torch.tanh(x)"},
};
inline const ActivationInfo& info(Activation a) { return kActivations[static_cast<int>(a)]; }
inline std::string to_string(Activation a) { return info(a).name; }

}  // namespace mnist
