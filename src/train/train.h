// train: Keras's Model.fit() loop. Batches come from the resident dataset by permutation +
// index_select on the training device (on CUDA, every epoch after the first replayed as one CUDA
// graph: graph.h); the training metrics are Keras's running means over the
// epoch's batches (what its progress bar and History report: the paper's 99.96% is such a number),
// accumulated on the device and read once per epoch; after every epoch the validation data (the
// validation_split, or else the test set) and the test set are evaluated. What Keras's callbacks do
// around the steps (the NaN stop, History, EarlyStopping, ReduceLROnPlateau, the progress lines,
// checkpoints) is callbacks.h's; fit() calls them.
#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config/config.h"
#include "data/data.h"
#include "model/model.h"
#include "step/optim.h"
#include "step/step.h"
#include "train/callbacks.h"
#include "train/graph.h"
#include "train/history.h"

namespace mnist {

struct FitOptions {
  std::ostream* log = nullptr;  // per-epoch lines (callbacks.h ProgressLogger); nullptr for silence
  bool progress_bar = false;    // live bar (stdout is a terminal)
  // Called after the standard callbacks at each point (the run directory's checkpoints, rundir.h).
  std::vector<Callback*> callbacks;
  std::function<void(const History&)> on_epoch_end;  // a LambdaCallback, after those
  // Checked after every step (a relaxed load, no device sync): when set, fit() returns after the
  // current step with `interrupted` set and progress() saying where to resume.
  const std::atomic<bool>* stop = nullptr;
};

struct FitResult {
  History history;
  std::string stopped_early;  // empty when every epoch ran; else why training stopped
  bool diverged = false;      // stopped on a non-finite loss (a failure; early stopping is not)
  bool interrupted = false;   // options.stop was set
  double evaluation_seconds = 0;  // evaluating the validation and test sets after each epoch
};

// The permutation of [0, n) used for `epoch`: a pure function of (seed, epoch), drawn on the CPU,
// so every device sees the same data order and a resumed run needs no saved RNG state.
torch::Tensor epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// The CPU memory that training `model` with `config` on `samples` samples takes at most: 24
// float32 values per parameter (measured: about 22 at the peak of a fused step, 17 of an autograd
// step, counting the values, gradients, optimizer slots, flat buffers and the update's
// temporaries), each batch's layer outputs three times over, and an evaluation pass
// (metrics.h kEvaluationBytes).
struct TrainingMemory {
  double bytes = 0;
  int64_t parameters = 0, batch = 0;  // what the estimate counted
};
TrainingMemory training_memory(const ModelImpl& model, const TrainingConfig& config, int64_t samples);

// The step that trains `model` with `config` on `device`: the fused step where it covers the run
// (`kernels_on_cpu`: its CUDA kernels' code run serially on the CPU, for tests), else autograd,
// with the reason in `why_not_fused` ("" when fused). `model`'s parameters must already be views
// of `optimizer`'s flat buffers, as KerasOptimizer makes them.
std::unique_ptr<TrainingStep> make_training_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config,
                                                 torch::Device device, bool kernels_on_cpu, std::string& why_not_fused);

class Trainer {
 public:
  Trainer(Model model, TrainingConfig config, torch::Device device);

  // Continue a run: its history so far, the position inside the next epoch and the early-stopping
  // best weights (empty when none). The optimizer's state is restored separately.
  void resume(History history, Progress progress, std::map<std::string, torch::Tensor> best_state = {});

  // Take each epoch's data order from `order` (int64 [epochs, m], read_data_order) instead of
  // shuffling: row e lists epoch e's samples, m distinct indices into the training split (all of
  // it, or a subset: an epoch is then m samples). Undefined: our own shuffle of the whole split.
  void set_data_order(torch::Tensor order) { data_order_ = std::move(order); }
  const torch::Tensor& data_order() const { return data_order_; }

  // Runs the remaining epochs. `validation` may be empty: val_* then reports `test`. All splits
  // must be on the device.
  FitResult fit(const Split& train, const Split& validation, const Split& test, const FitOptions& options);

  // Not copyable or movable: the step holds a reference to optimizer_.
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Tests: the fused step runs its CUDA kernels' code (fused_kernels.h) serially on the CPU, so
  // this trainer's own loop checks that code without a GPU. Before fit(); no-op on the autograd step.
  void run_kernels_on_cpu();

  KerasOptimizer& optimizer() { return optimizer_; }
  const KerasOptimizer& optimizer() const { return optimizer_; }
  // Which step trains this run: "fused" (fused.h), "autograd (<why not fused>)", either followed
  // by ", cuda graph" when CUDA replays each epoch as one graph. Final once fit() has seen the data.
  std::string step_kind() const;
  const History& history() const { return history_; }
  const Progress& progress() const { return progress_; }
  // Samples per epoch: the training split's, or the given data order's.
  int64_t epoch_size(const Split& train) const { return data_order_.defined() ? data_order_.size(1) : train.size(); }
  // Optimizer steps per epoch: the last batch may be short.
  int64_t steps_per_epoch(const Split& train) const { return (epoch_size(train) + config_.batch_size - 1) / config_.batch_size; }
  // The weights of early stopping's best epoch so far, kept only with restore_best_weights.
  const std::map<std::string, torch::Tensor>& best_state() const { return best_state_; }

 private:
  // Allocates the buffers every step reads and writes, once per training set: a captured graph
  // keeps their addresses. Decides whether a CUDA graph trains the run.
  void prepare(const Split& train);
  // Runs the rest of one epoch from progress_. Returns false when interrupted (progress_ then
  // holds the position); on completion `loss_sum` and `correct` hold the epoch's sums, read from
  // the device once.
  bool train_epoch(const Split& train, int64_t epoch, const FitOptions& options, const std::vector<Callback*>& callbacks,
                   FitState& state, double& loss_sum, double& correct);
  // The epoch's data order and per-step optimizer scalars to the device, and the running sums
  // from progress_: every step reads its part there, so no step needs a host value.
  void fill_epoch_buffers(const Split& train, int64_t epoch);
  // The eager loop: steps progress_.step .. steps-1, one call each, with the live progress bar and
  // the stop flag checked between steps. Returns the next step to take (steps: the epoch is done).
  int64_t run_steps(const Split& train, int64_t epoch, const FitOptions& options, const std::vector<Callback*>& callbacks,
                    FitState& state);
  // The epoch's logs: its training metrics, and the validation and test sets evaluated.
  EpochLogs evaluate_epoch(const Split& validation, const Split& test, double loss, double accuracy, double seconds,
                           FitResult& result);
  // The CUDA-graph epoch: every step of the epoch captured once as one graph, then replayed.
  void replay_epoch(const Split& train, int64_t epoch);
  Batch batch(const Split& train, int64_t epoch, int64_t step) const;

  Model model_;
  TrainingConfig config_;
  torch::Device device_;
  KerasOptimizer optimizer_;
  History history_;
  Progress progress_;
  std::map<std::string, torch::Tensor> best_state_;
  torch::Tensor data_order_;                // given per-epoch orders; undefined: epoch_permutation
  std::string fused_reason_;             // why the fused step does not cover this run ("" when it does)
  std::unique_ptr<TrainingStep> step_;  // autograd or fused (step.h); made after fused_reason_, which it sets
  std::unique_ptr<EpochGraph> graph_;    // set on CUDA when a graph covers this run
  bool warmed_up_ = false;               // an epoch ran eagerly on the graph's stream
  Split bound_;  // the training data the buffers (and a captured graph) were made for
  // The epoch's data order, per-step optimizer scalars (KerasOptimizer::step_table) and running
  // sums, on the device.
  torch::Tensor order_, table_, loss_sum_, correct_;
};

}  // namespace mnist
