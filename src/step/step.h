// step: one optimizer step of Keras's fit loop, behind one interface, so that the trainer
// (train.h) holds whichever step trains its run:
//   autograd  any model on any device: the model's forward, the loss (loss.h), LibTorch's
//             autograd and the optimizer's update (optim.h). Dropout masks and augmentation are
//             drawn from per-step seeds (rng.h).
//   fused     Flatten/Dense models without autograd (fused/fused.h, the layer above): loops
//             over sparse rows on the CPU, or a few kernels per layer on CUDA (fused_kernels.h),
//             whose code tests also run serially on the CPU.
// Every step reads its batch and its optimizer scalars from buffers on the device and adds its
// metrics to sums there: it needs no host value, so a CUDA graph can capture an epoch of steps.
#pragma once
#include <memory>
#include <string>

#include <torch/torch.h>

#include "config/config.h"
#include "data/data.h"
#include "model/model.h"
#include "step/optim.h"

namespace mnist {

// One step's work, all tensors on the training device. Views, not copies: making one per step
// allocates nothing.
struct Batch {
  const Split& train;
  int64_t epoch, step;            // which step of which epoch: the seeds of its dropout and augmentation
  int64_t start, len;             // its samples: train rows order[start .. start + len)
  const torch::Tensor& order;     // int64 [samples per epoch]
  const torch::Tensor& table;     // [steps, 2]: KerasOptimizer::step_table; this step's row is table[step]
  const torch::Tensor& loss_sum;  // float scalar: += the batch's summed loss (float32, as Keras's running mean)
  const torch::Tensor& correct;   // int64 scalar: += the batch's correct predictions
};

class TrainingStep {
 public:
  virtual ~TrainingStep() = default;
  // "autograd", "fused", or "fused (kernels, serially on the CPU)".
  virtual std::string name() const = 0;
  // Around the steps of an epoch (or of its interrupted part), on the training set `train`: the
  // fused steps keep the weights and the optimizer's slots in a layout of their own in between,
  // and give them back at the end, so checkpoints, evaluation and export see the usual model.
  virtual void begin_epoch(const Split& train) = 0;
  virtual void end_epoch() = 0;
  // One optimizer step. Queues device work only, so a CUDA graph can capture it.
  virtual void step(const Batch& batch) = 0;
};

// The autograd step: trains any model on any device. `model`'s parameters must already be views of
// `optimizer`'s flat buffers, as KerasOptimizer makes them. (Which step trains a run is the
// trainer's choice: train.h make_training_step.)
std::unique_ptr<TrainingStep> make_autograd_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config,
                                                 torch::Device device);

}  // namespace mnist
