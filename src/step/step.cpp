// step: the autograd step.
#include "step/step.h"

#include "data/augment.h"
#include "data/rng.h"
#include "model/loss.h"

namespace mnist {
namespace {

class AutogradStep : public TrainingStep {
 public:
  AutogradStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config, torch::Device device)
      : model_(model), optimizer_(optimizer), config_(config), device_(device) {}

  std::string name() const override { return "autograd"; }

  // The batch buffers are allocated once per training set and keep their addresses: a captured
  // CUDA graph reads them.
  void begin_epoch(const Split& train) override {
    if (x_buf_.defined() && bound_.is_same(train.images)) return;
    bound_ = train.images;
    x_buf_ = torch::empty({config_.batch_size, 1, kImageRows, kImageCols}, train.images.options());
    y_buf_ = torch::empty({config_.batch_size}, train.labels.options());
    if (config_.augmentation.enabled() && !augment_gen_.defined()) augment_gen_ = make_generator(device_, 0);
  }
  void end_epoch() override {}

  void step(const Batch& b) override {
    const torch::Tensor rows = b.order.narrow(0, b.start, b.len);
    torch::Tensor x = x_buf_.narrow(0, 0, b.len), y = y_buf_.narrow(0, 0, b.len);
    torch::index_select_out(x, b.train.images, 0, rows);
    torch::index_select_out(y, b.train.labels, 0, rows);
    const uint64_t seed = config_.seed, epoch = static_cast<uint64_t>(b.epoch), step = static_cast<uint64_t>(b.step);
    model_->reseed_noise(device_, mix_seed({seed, epoch, step, static_cast<uint64_t>(Stream::dropout)}));
    torch::Tensor input = x;
    if (config_.augmentation.enabled()) {
      augment_gen_.set_current_seed(mix_seed({seed, epoch, step, static_cast<uint64_t>(Stream::augmentation)}));
      input = augment(x, config_.augmentation, augment_gen_);
    }

    optimizer_.zero_grad();
    const torch::Tensor z = model_->logits(input);
    const torch::Tensor loss = sparse_categorical_crossentropy(z, y, model_->output_activation(), config_.loss);
    loss.backward();
    optimizer_.step(b.table[b.step]);

    torch::NoGradGuard no_grad;
    b.loss_sum.add_(loss.detach(), static_cast<double>(b.len));
    b.correct.add_(activate(z.detach(), accuracy_activation(model_->output_activation(), config_)).argmax(1).eq(y).sum());
  }

 private:
  Model model_;
  KerasOptimizer& optimizer_;
  TrainingConfig config_;
  torch::Device device_;
  torch::Tensor bound_, x_buf_, y_buf_;
  at::Generator augment_gen_;
};

}  // namespace

std::unique_ptr<TrainingStep> make_autograd_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config,
                                                 torch::Device device) {
  return std::make_unique<AutogradStep>(model, optimizer, config, device);
}

}  // namespace mnist
