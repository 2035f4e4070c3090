// model: a Keras Sequential model built from the config's layer list (see layers.h for each
// layer). Layers are registered under their Keras names (dense, dense_1, conv2d, ...), initialised
// as Keras does from one seeded generator, and shape-checked at build time. The output activation
// is kept apart from the last layer's pre-activation values because Keras's TensorFlow loss reads
// those logits (see loss.h).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "data/idx.h"
#include "model/layers.h"

namespace mnist {

// The model's input in Keras's terms: a 28x28 image with one channel (LibTorch: [N, 1, 28, 28]).
inline const Shape kImageShape = {kImageRows, kImageCols, 1};

class ModelImpl : public torch::nn::Module {
 public:
  // Builds and initialises from `seed` (on CPU, so every device starts from the same weights).
  // Throws ConfigError naming the layer whose input shape does not fit.
  ModelImpl(const ModelConfig& config, const Shape& input_shape, uint64_t seed);

  torch::Tensor logits(const torch::Tensor& x);   // the last layer's pre-activation values
  torch::Tensor forward(const torch::Tensor& x);  // the model's outputs, as Keras's predict() returns them
  Activation output_activation() const { return layers_.back()->activation; }
  const std::vector<std::shared_ptr<Layer>>& layers() const { return layers_; }

  // Everything a saved model needs: the parameters and the BatchNormalization moving statistics.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  // Copies `values` (every name state() has, with the same shapes, finite) in; throws naming `what`.
  void load_state(const std::map<std::string, torch::Tensor>& values, const std::string& what);
  // CRC-32 of state()'s names and float32 values, as 8 hex digits: written beside saved weights and
  // compared when they are read back, so that a damaged file is refused rather than evaluated.
  std::string state_checksum() const;

  // Dropout's masks for the coming step come from this seed (rng.h); a model without Dropout
  // ignores it.
  void reseed_noise(torch::Device device, uint64_t seed);
  bool has_noise() const { return has_dropout_; }

  int64_t parameter_count() const;      // trainable
  int64_t non_trainable_count() const;  // moving statistics
  std::string summary(const std::string& model_name) const;  // Keras model.summary()

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
  std::shared_ptr<Noise> noise_ = std::make_shared<Noise>();
  bool has_dropout_ = false;  // decided at build time: reseed_noise runs every training step
};
TORCH_MODULE(Model);

torch::Tensor activate(const torch::Tensor& x, Activation a);

}  // namespace mnist
