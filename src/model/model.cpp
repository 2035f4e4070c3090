// model: config layers -> Layer modules in Keras order, the forward pass, state and summary.
#include "model/model.h"

#include <zlib.h>

#include <cstdio>

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "config/errors.h"
#include "data/rng.h"

namespace mnist {
namespace {

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

int64_t count(const std::vector<torch::Tensor>& tensors) {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

}  // namespace

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
    auto layer = make_layer(config.layers[i], shape, gen, noise_, "model.layers[" + std::to_string(i) + "]");
    register_module(layer->name, layer);
    shape = layer->output_shape;
    has_dropout_ = has_dropout_ || std::holds_alternative<DropoutSpec>(config.layers[i].params);
    layers_.push_back(std::move(layer));
  }
}

torch::Tensor ModelImpl::logits(const torch::Tensor& x) {
  torch::Tensor h = x.dim() == 3 ? x.unsqueeze(1) : x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward(h);
    if (i + 1 < layers_.size()) h = activate(h, layers_[i]->activation);
  }
  return h;
}

torch::Tensor ModelImpl::forward(const torch::Tensor& x) { return activate(logits(x), output_activation()); }

std::vector<std::pair<std::string, torch::Tensor>> ModelImpl::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

void ModelImpl::load_state(const std::map<std::string, torch::Tensor>& values, const std::string& what) {
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : state()) {
    const auto it = values.find(name);
    if (it == values.end()) throw std::runtime_error(what + " lacks tensor " + name + " that its config needs");
    if (it->second.sizes() != tensor.sizes())
      throw std::runtime_error(what + ": tensor " + name + " has shape " + c10::str(it->second.sizes()) +
                               " but its config needs " + c10::str(tensor.sizes()));
    if (!torch::isfinite(it->second).all().item<bool>())
      throw std::runtime_error(what + ": tensor " + name + " holds non-finite values (NaN or inf): the file is damaged, or its model had diverged");
    tensor.copy_(it->second);
  }
}

std::string ModelImpl::state_checksum() const {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [name, tensor] : state()) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(name.data()), static_cast<uInt>(name.size()));
    const torch::Tensor t = tensor.detach().to(torch::kCPU, torch::kFloat).contiguous();
    crc = crc32(crc, reinterpret_cast<const Bytef*>(t.data_ptr<float>()), static_cast<uInt>(t.numel() * sizeof(float)));
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return hex;
}

void ModelImpl::reseed_noise(torch::Device device, uint64_t seed) {
  if (!has_noise()) return;
  if (noise_->generator.defined() && noise_->generator.device() == device) {
    std::lock_guard<std::mutex> lock(noise_->generator.mutex());
    noise_->generator.set_current_seed(seed);
  } else {
    noise_->generator = make_generator(device, seed);
  }
}

int64_t ModelImpl::parameter_count() const { return count(parameters()); }
int64_t ModelImpl::non_trainable_count() const { return count(buffers()); }

std::string ModelImpl::summary(const std::string& model_name) const {
  std::ostringstream out;
  size_t width = 29;  // Keras's column, widened for long names such as batch_normalization_1
  for (const auto& l : layers_) width = std::max(width, l->name.size() + l->type.size() + 5);
  const std::string rule(width + 36, '_'), double_rule(width + 36, '=');
  out << "Model: \"" << model_name << "\"\n" << rule << "\n";
  out << std::left << std::setw(static_cast<int>(width)) << " Layer (type)" << std::setw(26) << "Output Shape" << "Param #\n"
      << double_rule << "\n";
  for (const auto& l : layers_)
    out << std::left << std::setw(static_cast<int>(width)) << (" " + l->name + " (" + l->type + ")") << std::setw(26)
        << format_shape(l->output_shape) << count(l->parameters()) + count(l->buffers()) << "\n";
  const int64_t trainable = parameter_count(), frozen = non_trainable_count();
  out << double_rule << "\nTotal params: " << with_commas(trainable + frozen) << "\nTrainable params: " << with_commas(trainable)
      << "\nNon-trainable params: " << with_commas(frozen) << "\n" << rule << "\n";
  return out.str();
}

}  // namespace mnist
