// fused: the training step of a Dense stack (the paper's model) without autograd, on the CPU.
//
// At batch 32 the paper's network is about 5 MFLOP per step, so a step is dominated by per-op
// overhead, not arithmetic. Here forward, softmax cross-entropy and backward are plain
// loops over buffers allocated once, and the optimizer's update (optim.h apply_update) is applied
// to a few rows of parameters at a time, where their gradients are summed:
//  - the kernels are held in Keras's [in, out] layout while an epoch runs, so every product is a
//    sum of contiguous rows, built in registers and stored once (fused.cpp row_combination);
//  - the first layer reads the images as sparse rows (built once per dataset: about 19% of MNIST's
//    pixels are non-zero), and each hidden layer's input is packed the same way (ReLU's zeros), so
//    forward and weight gradients touch only non-zero inputs. Adding 0 * w is all that is skipped,
//    so the arithmetic is the autograd step's, in another order. A narrow layer (at most 16 units:
//    the classifier) reads its input dense instead, building several rows at once, since a row of
//    one vector would be a single chain of dependent multiply-adds.
//  - on several threads, a wide layer's inputs are cut in bands, each one thread's share of the
//    forward and of the weights' gradients and update, so the weights a thread updates are the
//    ones it reads; while one thread runs the narrow layers above the first and the loss, the
//    others regroup the first layer's inputs for its weight gradient (fused.cpp).
// The weights and the optimizer's slots are copied in at the start of each epoch and back at its
// end or interruption (FusedDenseStep), so checkpoints, evaluation and export see the usual model.
// Evaluation on the CPU runs the same forward on the model's weights (forward.h fused_logits).
// On CUDA (Torch built with it) the same step runs as a few kernels per layer (fused_kernels.h),
// on the same Keras-layout buffers, dense, with the update applied where each gradient is summed.
// Every optimizer trains on it (update_rules.h). Models it does not cover (any layer but Flatten
// and Dense, the renormalized loss, augmentation) train on the autograd step (step.h).
// tests/test_fused.cpp checks it against that step.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "data/data.h"
#include "model/model.h"
#include "step/optim.h"
#include "step/step.h"

namespace mnist {

// Why the fused step cannot train `model` with `config` on `device`; empty when it can.
std::string fused_unsupported(const Model& model, const TrainingConfig& config, torch::Device device);

// What the fused steps share: the Dense layers' places in the optimizer's flat buffers, and the
// weights and the optimizer's slots in Keras's [in, out] layout from begin_epoch to end_epoch.
class FusedDenseStep : public TrainingStep {
 public:
  // Zeros after the end of params_ and of every buffer whose rows the CPU loops read as whole
  // vectors (fused.cpp row_combination).
  static constexpr int64_t kSlack = 16;

  void begin_epoch(const Split& train) override;  // bind(train), then the weights and slots in
  void end_epoch() override;                      // and back out

 protected:
  // `model`'s parameters must already be views of `optimizer`'s flat buffers (Trainer does that).
  FusedDenseStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config);
  // Makes `train` the data of the coming steps (the CPU step builds its sparse rows once per set).
  virtual void bind(const Split& train) = 0;
  // After the Keras-layout buffers are allocated (once: their addresses never change, a CUDA
  // graph captures them).
  virtual void buffers_allocated() {}

  struct Layer {
    int64_t in = 0, out = 0, weight = 0, bias = -1;  // offsets into the flat buffers; bias -1: none
    Activation activation = Activation::linear;
  };
  KerasOptimizer& optimizer_;
  const TrainingConfig config_;
  Activation output_;  // what Keras's accuracy takes the argmax of: the last layer's activation, or linear
  std::vector<Layer> layers_;
  // Keras layout, valid between begin_epoch and end_epoch; params_ ends in kSlack zeros.
  torch::Tensor params_, grads_;
  std::array<torch::Tensor, 3> slots_;  // the optimizer's slots (optim.h slot_names order, then zeros), in the same layout

 private:
  torch::Tensor to_keras_layout(const torch::Tensor& flat) const;
  torch::Tensor to_torch_layout(const torch::Tensor& flat) const;
};

// The fused step on the CPU: fused.cpp's loops over sparse rows.
std::unique_ptr<TrainingStep> make_cpu_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config);
// The fused step as fused_kernels.h's kernels (kernel_step.cpp): CUDA kernels where the
// parameters are on CUDA, else the same kernels' code run serially on the CPU (for tests).
std::unique_ptr<TrainingStep> make_kernel_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config);

}  // namespace mnist
