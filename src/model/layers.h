// layers: the Keras layers a config can name. Each layer knows its Keras shape rule, its Keras
// initialisation, its forward pass, the TorchScript that export writes for it, and the order of
// its arrays in Keras's get_weights(). Model, export and Keras import all ask the layer, so a new
// layer type is one class here (plus its spec in config.h).
//
// Shapes are Keras's, per sample and channels last: (height, width, channels) or (features).
// Tensors are LibTorch's: images [N, C, H, W], features [N, F]. Flatten and Reshape read images
// in Keras's (H, W, C) order, so a Dense kernel after them is laid out exactly as Keras's.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"

namespace mnist {

using Shape = std::vector<int64_t>;
std::string format_shape(const Shape& s);  // Keras style: "(None, 28, 28, 16)"
int64_t numel(const Shape& s);             // values per sample: the product of the dimensions

// One array of Keras's layer.get_weights(), and the LibTorch tensor it becomes.
struct KerasWeight {
  std::string role;                  // Keras's variable name: kernel, bias, gamma, beta, moving_mean, moving_variance
  std::string tensor;                // our parameter or buffer name: weight, bias, running_mean, running_var
  Shape keras_shape;
  std::vector<int64_t> to_torch;     // permutation from the Keras layout; empty: none
};

// The generator dropout draws from; the trainer reseeds it every step (see rng.h).
struct Noise {
  at::Generator generator;
};

class Layer : public torch::nn::Module {
 public:
  // The layer's output before its own activation (Dense and Conv2D carry one, as in Keras).
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // TorchScript statements that do the same to `x`, indented two spaces; `self` is the layer.
  virtual std::string script() const = 0;
  virtual std::vector<KerasWeight> keras_weights() const { return {}; }

  std::string name, type;  // type: Keras's class name, for people ("Dense")
  LayerParams params;       // what the config built it from; is<DenseSpec>() asks which layer it is
  template <class Spec>
  bool is() const { return std::holds_alternative<Spec>(params); }
  Activation activation = Activation::linear;
  Shape output_shape;
};

// Builds `spec` for inputs of Keras shape `input`, drawing its initial weights from `init`.
// Throws ConfigError at `path` when the input shape does not fit the layer.
std::shared_ptr<Layer> make_layer(const LayerSpec& spec, const Shape& input, at::Generator& init,
                                  const std::shared_ptr<Noise>& noise, const std::string& path);

}  // namespace mnist
