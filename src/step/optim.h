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
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "math/update_rules.h"

namespace mnist {

// The optimizer's rule (update_rules.h) over floats [0, n) of flat CPU buffers: parameters,
// gradients and the rule's slots (those it does not use are not touched), one loop per rule.
void apply_update(const UpdateRule& rule, StepRow row, float* p, const float* g, float* slot_a, float* slot_b, float* slot_c,
                  int64_t n);

// The same rule as tensor ops, for any device and float dtype, in the same order of operations
// (float32 tensors get the loop's bits: the constants are cast to the tensors' dtype). Its
// per-step scalars come from `row`, a step_table row on the parameters' device; t1 and t2 are
// scratch shaped like p.
void apply_update(const BasicUpdateRule<double>& rule, const torch::Tensor& row, const torch::Tensor& p, const torch::Tensor& g,
                  const torch::Tensor& slot_a, const torch::Tensor& slot_b, const torch::Tensor& slot_c, torch::Tensor t1,
                  torch::Tensor t2);

// Adam's bias-corrected step size alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) at step t,
// computed as Keras computes it for float32 variables: every operand and operation in float32. It
// differs from the exact value by up to 1e-5 relative in the first thousand steps, always the same
// way (1 - beta_2^t cancels), so an exact alpha_t drifts away from Keras's training.
float keras_adam_alpha_float32(double learning_rate, double beta_1, double beta_2, int64_t t);

// What an optimizer carries from step to step: its rule's slots by the names Keras gives them, each
// flat and shaped like the parameters, and Keras's `iterations`.
struct OptimizerState {
  std::vector<std::pair<std::string, torch::Tensor>> slots;  // in the order the rule takes them (slot_names)
  int64_t iterations = 0;
  const torch::Tensor& slot(const std::string& name) const;  // throws std::out_of_range without it
};
// The slots of `optimizer`'s update rule (update_rules.h), in the order it takes them: adam and
// adamw {momentum, velocity} (Keras's m and v), sgd {momentum}, rmsprop {velocity, momentum,
// average_gradient}.
std::vector<std::string> slot_names(Optimizer optimizer);

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
  // The optimizer's rule (update_rules.h) for float32 parameters: what the fused step applies to
  // each parameter; rule_in_double() for the tensor form.
  const UpdateRule& rule() const { return rule_; }
  const BasicUpdateRule<double>& rule_in_double() const { return rule_in_double_; }
  // Steps taken since the start: Keras's `iterations`, from which the next table starts.
  void count_steps(int64_t count) { iterations_ += count; }
  // One step at the current learning rate: step_table, step and count_steps in one call.
  void step();

  int64_t iterations() const { return iterations_; }
  double learning_rate() const { return learning_rate_; }
  void set_learning_rate(double lr) { learning_rate_ = lr; }  // schedules and ReduceLROnPlateau

  const torch::Tensor& flat_params() const { return params_; }
  const torch::Tensor& flat_grads() const { return grads_; }

  // A copy of the optimizer's state, for checkpoints and for rolling back an epoch; load_state
  // takes one with this rule's slots, shaped like the parameters.
  OptimizerState state() const;
  void load_state(const OptimizerState& state);

 private:
  OptimizerConfig config_;
  UpdateRule rule_;
  BasicUpdateRule<double> rule_in_double_;
  torch::Tensor params_, grads_;
  torch::Tensor slot_a_, slot_b_, slot_c_;  // the rule's slots, in slot_names order; those it does not use stay 0
  torch::Tensor scratch_, scratch_2_;
  int64_t iterations_ = 0;
  double learning_rate_;
};

// keras.optimizers.schedules: the rate for optimizer step `step` (counted from 0, as Keras's
// `iterations` before the update) of a run of `total_steps`.
double scheduled_learning_rate(const ScheduleConfig& schedule, double initial, int64_t step, int64_t total_steps);

}  // namespace mnist
