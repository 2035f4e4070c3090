// fused: what the fused steps share (FusedDenseStep): which runs they cover, the Dense layers'
// places in the optimizer's flat buffers, and the Keras-layout copies of the weights and slots.
#include "fused/fused.h"

#include "fused/dense_stack.h"

namespace mnist {

std::string fused_unsupported(const Model& model, const TrainingConfig& config, torch::Device device) {
  if (!config.fused) return "training.fused is false";
#ifdef MNIST_WITH_CUDA
  if (!device.is_cpu() && !device.is_cuda()) return "it runs on the CPU and CUDA only";
#else
  if (!device.is_cpu()) return "it runs on the CPU only (this build's Torch has no CUDA)";
#endif
  if (config.augmentation.enabled()) return "augmentation needs the autograd step";
  const bool logits_loss = config.loss.from_logits ? model->output_activation() == Activation::linear
                                                   : config.loss.semantics == LossSemantics::tensorflow;
  if (!logits_loss) return "it implements the softmax cross-entropy on the logits only";
  return dense_stack_unsupported(*model);
}

FusedDenseStep::FusedDenseStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config)
    : optimizer_(optimizer), config_(config), output_(accuracy_activation(model->output_activation(), config)) {
  const float* base = optimizer_.flat_params().data_ptr<float>();
  for (const DenseLayer& d : dense_stack(*model)) {
    Layer l;
    l.in = d.in, l.out = d.out, l.activation = d.activation;
    l.weight = d.weight.data_ptr<float>() - base;
    l.bias = d.bias.defined() ? d.bias.data_ptr<float>() - base : -1;
    layers_.push_back(l);
  }
}

torch::Tensor FusedDenseStep::to_keras_layout(const torch::Tensor& flat) const {
  torch::Tensor out = flat.clone();
  for (const auto& l : layers_)
    out.narrow(0, l.weight, l.in * l.out).view({l.in, l.out}).copy_(flat.narrow(0, l.weight, l.in * l.out).view({l.out, l.in}).t());
  return out;
}

torch::Tensor FusedDenseStep::to_torch_layout(const torch::Tensor& flat) const {
  torch::Tensor out = flat.clone();
  for (const auto& l : layers_)
    out.narrow(0, l.weight, l.in * l.out).view({l.out, l.in}).copy_(flat.narrow(0, l.weight, l.in * l.out).view({l.in, l.out}).t());
  return out;
}

void FusedDenseStep::begin_epoch(const Split& train) {
  bind(train);
  torch::NoGradGuard no_grad;
  const OptimizerState state = optimizer_.state();
  const int64_t n = optimizer_.flat_params().numel();
  if (!params_.defined()) {
    params_ = torch::zeros({n + kSlack}, optimizer_.flat_params().options());
    grads_ = torch::zeros({n}, params_.options());
    for (auto& slot : slots_) slot = torch::zeros({n}, params_.options());
    buffers_allocated();
  }
  params_.narrow(0, 0, n).copy_(to_keras_layout(optimizer_.flat_params()));
  for (size_t k = 0; k < state.slots.size(); ++k) slots_[k].copy_(to_keras_layout(state.slots[k].second));
}

void FusedDenseStep::end_epoch() {
  torch::NoGradGuard no_grad;
  OptimizerState state = optimizer_.state();
  optimizer_.flat_params().copy_(to_torch_layout(params_.narrow(0, 0, grads_.numel())));
  for (size_t k = 0; k < state.slots.size(); ++k) state.slots[k].second = to_torch_layout(slots_[k]);
  optimizer_.load_state(state);
}

}  // namespace mnist
