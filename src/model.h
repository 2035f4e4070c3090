// model: a Keras Sequential model built from the config's layer list. Layers are registered under
// their Keras names (dense, dense_1, ...), initialised as Keras does (glorot_uniform kernels, zero
// biases), and shape-checked at build time. The output activation is kept apart from the last
// layer's pre-activation values because Keras's TensorFlow loss reads those logits (see loss.h).
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config.h"

namespace mnist {

using Shape = std::vector<int64_t>;  // per-sample shape, no batch dimension
inline const Shape kImageShape = {1, 28, 28};

std::string format_shape(const Shape& s);  // Keras style: "(None, 784)"

class ModelImpl : public torch::nn::Module {
 public:
  // Builds and initialises from `seed` (on CPU, so every device starts from the same weights).
  // Throws ConfigError naming the layer whose input shape does not fit.
  ModelImpl(const ModelConfig& config, const Shape& input_shape, uint64_t seed);

  torch::Tensor logits(const torch::Tensor& x);   // the last layer's pre-activation values
  torch::Tensor forward(const torch::Tensor& x);  // the model's outputs, as Keras's predict() returns them
  Activation output_activation() const { return layers_.back().activation; }

  int64_t parameter_count() const;
  std::string summary(const std::string& model_name) const;  // Keras model.summary()

 private:
  struct Layer {
    std::string name, type;
    torch::nn::AnyModule module;
    Activation activation = Activation::linear;
    Shape output_shape;
    int64_t params = 0;
  };
  std::vector<Layer> layers_;
};
TORCH_MODULE(Model);

torch::Tensor activate(const torch::Tensor& x, Activation a);

}  // namespace mnist
