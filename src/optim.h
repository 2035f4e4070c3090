// optim: Keras's optimizers (adam, sgd, rmsprop) with Keras's update rules, over one flat buffer.
//
// All parameters are re-pointed into one contiguous tensor and their .grad into another, so an
// optimizer step is a handful of vectorised passes over 79,510 floats instead of a loop of small
// ops per parameter tensor, and it allocates nothing.
//
// Keras Adam (keras.optimizers.Adam.update_step) differs from torch.optim.Adam in where epsilon
// goes: Keras folds both bias corrections into the step size and adds epsilon to sqrt(v) itself,
//     alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t);   p -= alpha_t * m / (sqrt(v) + eps)
// whereas PyTorch adds epsilon to sqrt(v_hat) = sqrt(v) / sqrt(1 - beta_2^t). Keras's default
// epsilon is also 1e-7, not 1e-8. AdamW is Adam after Keras's decoupled weight decay,
// p -= p * weight_decay * lr, applied to every trainable variable as Keras does by default.
#pragma once
#include <functional>
#include <vector>

#include <torch/torch.h>

#include "config.h"

namespace mnist {

// One Adam/AdamW step's coefficients, Keras's bias corrections folded into alpha.
struct AdamStep {
  double alpha, one_minus_beta_1, one_minus_beta_2, epsilon;
  double weight_decay, decay_rate;  // AdamW's weight_decay and this step's learning rate; 0 and 0 for adam
};

// The Keras Adam update of n floats in place, one pass on the CPU, each operation rounded to float32
// where Keras rounds it (AdamW's decay is its own assignment, p -= (p wd) lr, before Adam's):
//   p -= (p weight_decay) decay_rate;  m += (g - m) one_minus_beta_1;  v += (g^2 - v) one_minus_beta_2;
//   p -= (m alpha) / (sqrt(v) + eps)
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s);

// Adam's bias-corrected step size alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) at step t,
// computed as Keras computes it for float32 variables: every operand and operation in float32. It
// differs from the exact value by up to 1e-5 relative in the first thousand steps, always the same
// way (1 - beta_2^t cancels), so an exact alpha_t drifts away from Keras's training.
float keras_adam_alpha_float32(double learning_rate, double beta_1, double beta_2, int64_t t);

// The same update on tensors of any device and float dtype, in the same order of operations, so
// float32 tensors on the CPU get the same bits. Its per-step scalars are 1-element tensors (a
// step_table row: rate = -alpha_t, decay_rate), never host values; t1 and t2 are scratch shaped like p.
// Keras's order, p -= (m alpha_t) / (sqrt(v) + eps): the product first, then the quotient.
void adam_update(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v,
                 const torch::Tensor& row, double one_minus_beta_1, double one_minus_beta_2, double epsilon,
                 double weight_decay, torch::Tensor t1, torch::Tensor t2);

class KerasOptimizer {
 public:
  // Takes over `params`: afterwards they are views of one flat buffer and so are their gradients.
  KerasOptimizer(std::vector<torch::Tensor> params, OptimizerConfig config);

  void zero_grad() { grads_.zero_(); }  // keep .grad defined: autograd then accumulates in place

  // The scalars of the next `count` steps, one row per step: {rate, decay_rate}, in the
  // parameters' dtype, on the CPU. rate is -alpha_t for adam/adamw (Keras's bias corrections folded
  // in, from the step's iteration number) and -learning_rate for sgd/rmsprop; decay_rate is the
  // learning rate AdamW's decay multiplies by (else 0). `learning_rate(i)` gives step i's rate, i
  // from 0. alpha_t is computed as Keras computes it, in the parameters' dtype
  // (keras_adam_alpha_float32 for float32 parameters).
  // A step that reads its row from a table on the device needs nothing from the host, so a CUDA
  // graph can replay a whole epoch of them (graph.h).
  torch::Tensor step_table(int64_t count, const std::function<double(int64_t)>& learning_rate) const;
  // One update of the parameters from their gradients, its scalars from `row` (a row of
  // step_table, on the parameters' device). Does not count the step: see count_steps.
  void step(const torch::Tensor& row);
  // The Adam coefficients of a step_table row (on the CPU): for the fused step's adam_update.
  AdamStep adam_step(const float* row) const;
  // Steps taken since the start: Keras's `iterations`, from which the next table starts.
  void count_steps(int64_t count) { iterations_ += count; }
  // One step at the current learning rate: step_table, step and count_steps in one call.
  void step();

  int64_t iterations() const { return iterations_; }
  // AdamW's weight_decay; 0 for every other optimizer.
  double weight_decay() const { return config_.name == "adamw" ? config_.weight_decay : 0.0; }
  double learning_rate() const { return learning_rate_; }
  void set_learning_rate(double lr) { learning_rate_ = lr; }  // schedules and ReduceLROnPlateau

  const torch::Tensor& flat_params() const { return params_; }
  const torch::Tensor& flat_grads() const { return grads_; }

  // Optimizer state (slots and iteration count), for checkpoints and for rolling back a step.
  std::vector<torch::Tensor> state() const;
  void load_state(const std::vector<torch::Tensor>& state);

 private:
  OptimizerConfig config_;
  torch::Tensor params_, grads_;
  torch::Tensor slot_a_, slot_b_, slot_c_;  // adam: m, v; rmsprop: velocity, momentum, average_gradient; sgd: momentum
  torch::Tensor scratch_, scratch_2_;
  int64_t iterations_ = 0;
  double learning_rate_;
};

// keras.optimizers.schedules: the rate for optimizer step `step` (counted from 0, as Keras's
// `iterations` before the update) of a run of `total_steps`.
double scheduled_learning_rate(const ScheduleConfig& schedule, double initial, int64_t step, int64_t total_steps);

}  // namespace mnist
