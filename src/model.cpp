// model: config layers -> torch::nn modules with Keras initialisation, shapes and summary.
#include "model.h"

#include <cmath>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "errors.h"

namespace mnist {
namespace {

int64_t numel(const Shape& s) { return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<>()); }

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

// keras.initializers.GlorotUniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)).
// LibTorch's Linear default (kaiming_uniform with a=sqrt(5), bias U(+-1/sqrt(fan_in))) differs.
void keras_dense_init(const torch::nn::Linear& linear, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const auto fan_out = linear->weight.size(0), fan_in = linear->weight.size(1);
  const double limit = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  linear->weight.uniform_(-limit, limit, gen);
  if (linear->bias.defined()) linear->bias.zero_();  // keras.initializers.Zeros
}

}  // namespace

std::string format_shape(const Shape& s) {
  std::string out = "(None";
  for (auto d : s) out += ", " + std::to_string(d);
  return out + ")";
}

torch::Tensor activate(const torch::Tensor& x, Activation a) {
  switch (a) {
    case Activation::relu: return torch::relu(x);
    case Activation::sigmoid: return torch::sigmoid(x);
    case Activation::softmax: return torch::softmax(x, -1);
    case Activation::tanh: return torch::tanh(x);
    case Activation::linear: break;
  }
  return x;
}

ModelImpl::ModelImpl(const ModelConfig& config, const Shape& input_shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  Shape shape = input_shape;
  for (size_t i = 0; i < config.layers.size(); ++i) {
    const LayerSpec& spec = config.layers[i];
    const std::string path = "model.layers[" + std::to_string(i) + "]";
    Layer layer{spec.name, spec.type, {}, Activation::linear, {}, 0};
    if (std::holds_alternative<FlattenSpec>(spec.params)) {
      layer.module = torch::nn::AnyModule(register_module(spec.name, torch::nn::Flatten()));
      shape = {numel(shape)};
    } else {
      const auto& d = std::get<DenseSpec>(spec.params);
      // Keras's Dense acts on the last axis of any input, but a Dense on an image then leaves a
      // [28, units] output no classification loss accepts; ask for the Flatten instead.
      if (shape.size() != 1)
        throw ConfigError(path, "Dense needs a flat input but receives " + format_shape(shape) +
                                    "; put a {\"type\": \"Flatten\"} layer before it");
      auto linear = register_module(spec.name, torch::nn::Linear(torch::nn::LinearOptions(shape[0], d.units).bias(d.use_bias)));
      keras_dense_init(linear, gen);
      layer.module = torch::nn::AnyModule(linear);
      layer.activation = d.activation;
      layer.params = shape[0] * d.units + (d.use_bias ? d.units : 0);
      shape = {d.units};
    }
    layer.output_shape = shape;
    layers_.push_back(std::move(layer));
  }
}

torch::Tensor ModelImpl::logits(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i].module.forward(h);
    if (i + 1 < layers_.size()) h = activate(h, layers_[i].activation);
  }
  return h;
}

torch::Tensor ModelImpl::forward(const torch::Tensor& x) { return activate(logits(x), output_activation()); }

int64_t ModelImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

std::string ModelImpl::summary(const std::string& model_name) const {
  std::ostringstream out;
  const std::string rule(65, '_'), double_rule(65, '=');
  out << "Model: \"" << model_name << "\"\n" << rule << "\n";
  out << std::left << std::setw(29) << " Layer (type)" << std::setw(26) << "Output Shape" << "Param #\n" << double_rule << "\n";
  for (const auto& l : layers_)
    out << std::left << std::setw(29) << (" " + l.name + " (" + l.type + ")") << std::setw(26) << format_shape(l.output_shape)
        << l.params << "\n";
  const int64_t total = parameter_count();
  out << double_rule << "\nTotal params: " << with_commas(total) << "\nTrainable params: " << with_commas(total)
      << "\nNon-trainable params: 0\n" << rule << "\n";
  return out.str();
}

}  // namespace mnist
