// fused: the CPU training step of a Dense stack (the paper's model) without autograd.
//
// At batch 32 the paper's network is about 5 MFLOP per step, so a step is dominated by per-op
// overhead, not arithmetic. Here forward, softmax cross-entropy and backward are plain
// loops over buffers allocated once, and the optimizer's update is one pass (optim.h apply_update):
//  - the kernels are held in Keras's [in, out] layout while an epoch runs, so every product is a
//    sum of contiguous rows, built in registers and stored once (fused.cpp row_combination);
//  - the first layer reads the images as sparse rows (built once per dataset: about 19% of MNIST's
//    pixels are non-zero), and each hidden layer's input is packed the same way (ReLU's zeros), so
//    forward and weight gradients touch only non-zero inputs. Adding 0 * w is all that is skipped,
//    so the arithmetic is the autograd step's, in another order.
// The weights and the optimizer's slots are copied in at the start of each epoch (load) and back
// at its end or interruption (store), so checkpoints, evaluation and export see the usual model.
// On CUDA (Torch built with it) the same step runs as a few kernels per layer (fused_kernels.h),
// on the same Keras-layout buffers, dense, with the update applied where each gradient is summed.
// Every optimizer trains on it (update_rules.h). Models it does not cover (any layer but Flatten
// and Dense, the renormalized loss, augmentation) train on the autograd step. tests/test_fused.cpp checks it against that step.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "fused_kernels.h"
#include "model.h"
#include "optim.h"

namespace mnist {

// A batch of sparse rows (compressed sparse rows): row r's non-zero entries are
// index/value[start[r] .. start[r + 1]).
struct SparseRows {
  std::vector<int64_t> start;
  std::vector<int32_t> index;
  std::vector<float> value;
};

// Why the fused step cannot train `model` with `config` on `device`; empty when it can.
std::string fused_unsupported(const Model& model, const TrainingConfig& config, torch::Device device);

class FusedDenseStep {
 public:
  // `model`'s parameters must already be views of `optimizer`'s flat buffer (Trainer does that).
  // On CUDA the step runs as kernels (fused_kernels.h); `kernels_on_cpu` runs the same kernels'
  // code serially on the CPU instead of the CPU's loops, so tests can check it without a GPU.
  FusedDenseStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config, bool kernels_on_cpu = false);

  // Builds the sparse rows of `train.images` unless they are already built for it.
  void bind(const Split& train);
  void load();   // model weights and optimizer slots -> the Keras-layout buffers
  void store();  // and back

  // One optimizer step on rows[0..len) of the bound split, its scalars from `row`
  // (a row of KerasOptimizer::step_table). Adds the batch's summed loss (float like Keras's
  // running mean) and its number of correct predictions to *loss_sum and *correct. Every pointer
  // is on the step's device; on CUDA the step only queues kernels on the current stream.
  void step(const int64_t* rows, int64_t len, const float* row, float* loss_sum, int64_t* correct);

 private:
  struct Layer {
    int64_t in = 0, out = 0, weight = 0, bias = -1;  // offsets into the flat buffers; bias -1: none
    Activation activation = Activation::linear;
  };
  torch::Tensor to_keras_layout(const torch::Tensor& flat) const;
  torch::Tensor to_torch_layout(const torch::Tensor& flat) const;
  void forward(const int64_t* rows, int64_t len);
  void backward(const int64_t* rows, int64_t len);
  void point_kernel_layers();
  void step_kernels(const int64_t* rows, int64_t len, const float* row, float* loss_sum, int64_t* correct);

  KerasOptimizer& optimizer_;
  const bool kernels_;    // the kernel formulation: on CUDA, or kernels_on_cpu
  LossConfig loss_;
  Activation output_;  // what Keras's accuracy takes the argmax of: the last layer's activation, or linear
  std::vector<Layer> layers_;
  // Keras layout, valid between load() and store(). params_ ends in fused.cpp's kSlack floats
  // of zeros, like every buffer whose rows the kernels read as whole vectors.
  torch::Tensor params_, grads_;
  std::array<torch::Tensor, 3> slots_;  // the optimizer's slots (optim.h), in the same layout
  std::vector<std::vector<float>> acts_;  // per layer: [batch, out] outputs (the last: logits, then dlogits)
  std::vector<SparseRows> inputs_;        // per layer but the first: its input activations as sparse rows
  SparseRows by_input_;                   // weight-gradient scratch: a layer's non-zero inputs grouped by input
  std::vector<float> delta_, delta_in_, wt_;  // backward scratch: dZ of a layer, dA below it, a kernel transposed
  std::vector<int32_t> iota_;                 // 0, 1, 2, ...: the rows of a dense operand, as sparse indices
  std::vector<int64_t> batch_rows_;           // 0 .. batch-1 as int64: a hidden layer's rows
  std::vector<float> ones_;                   // the weights of the bias gradient's sum
  // The bound split (held, so its storage cannot be reused by another split): its labels, and
  // its images as sparse rows.
  torch::Tensor bound_, bound_labels_;
  std::vector<int64_t> labels_;
  SparseRows images_;
  // Kernels: per layer outputs and deltas ([batch, out] each, in one buffer), the loss's
  // per-sample scratch, and the kernels' view of the layers (pointers into these, params_).
  torch::Tensor kernel_acts_, sample_loss_, sample_hit_;
  std::vector<kernels::Layer> kernel_layers_;
};

}  // namespace mnist
