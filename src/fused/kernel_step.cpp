// kernel_step: the fused step as fused_kernels.h's kernels, on the Keras-layout buffers the fused
// steps share (fused.h): CUDA kernels where the parameters live on CUDA, else the same kernels'
// code run one thread after another on the CPU, so tests check that code without a GPU.
#include <stdexcept>

#ifdef MNIST_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "fused/fused.h"
#include "fused/fused_kernels.h"

namespace mnist {
namespace {

class KernelStep : public FusedDenseStep {
 public:
  KernelStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config)
      : FusedDenseStep(model, optimizer, config) {
    int64_t outputs = 0;
    for (const auto& l : layers_) outputs += l.out;
    const auto on_device = optimizer_.flat_params().options();
    acts_ = torch::zeros({2 * config.batch_size * outputs}, on_device);
    sample_loss_ = torch::zeros({config.batch_size}, on_device);
    sample_hit_ = torch::zeros({config.batch_size}, on_device.dtype(torch::kLong));
  }

  std::string name() const override { return on_cuda() ? "fused" : "fused (kernels, serially on the CPU)"; }

  void step(const Batch& b) override {
    const kernels::Step s{bound_.data_ptr<float>(),
                          bound_labels_.data_ptr<int64_t>(),
                          b.order.data_ptr<int64_t>() + b.start,
                          b.len,
                          layers_.front().in,
                          &layers_on_device_,
                          {params_.data_ptr<float>(), slots_[0].data_ptr<float>(), slots_[1].data_ptr<float>(),
                           slots_[2].data_ptr<float>()},
                          optimizer_.rule(),
                          b.table.data_ptr<float>() + 2 * b.step,
                          smoothed_targets(config_.loss.label_smoothing, layers_.back().out),
                          output_,
                          sample_loss_.data_ptr<float>(),
                          sample_hit_.data_ptr<int64_t>(),
                          b.loss_sum.data_ptr<float>(),
                          b.correct.data_ptr<int64_t>()};
    if (!on_cuda()) return kernels::fused_step(kernels::SerialLaunch{}, s);
#ifdef MNIST_WITH_CUDA
    kernels::fused_step_cuda(s, c10::cuda::getCurrentCUDAStream().stream());
#else
    throw std::logic_error("the fused step's CUDA kernels need a Torch built with CUDA");
#endif
  }

 private:
  bool on_cuda() const { return acts_.is_cuda(); }

  // The kernels read the resident images and labels as they are.
  void bind(const Split& train) override {
    TORCH_CHECK(train.images.is_contiguous() && train.labels.is_contiguous(), "the fused step's kernels need contiguous data");
    bound_ = train.images;
    bound_labels_ = train.labels;
  }

  // The kernels' view of the layers: pointers into params_ and acts_, made once.
  void buffers_allocated() override {
    float* p = params_.data_ptr<float>();
    float* acts = acts_.data_ptr<float>();
    const int64_t batch = sample_loss_.numel();
    for (const Layer& L : layers_) {
      layers_on_device_.push_back({p + L.weight, L.bias >= 0 ? p + L.bias : nullptr, L.weight, L.bias, L.in, L.out, L.activation,
                                   acts, acts + batch * L.out});
      acts += 2 * batch * L.out;
    }
  }

  // Per layer its outputs and deltas ([batch, out] each, in one buffer), and the loss's per-sample
  // scratch.
  torch::Tensor acts_, sample_loss_, sample_hit_;
  torch::Tensor bound_, bound_labels_;
  std::vector<kernels::Layer> layers_on_device_;
};

}  // namespace

std::unique_ptr<TrainingStep> make_kernel_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config) {
  return std::make_unique<KernelStep>(model, optimizer, config);
}

}  // namespace mnist
