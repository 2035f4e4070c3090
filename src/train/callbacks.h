// callbacks: what Keras's fit() does around the optimizer steps, one callback each, behind the
// interface of keras.callbacks.Callback. Trainer::fit (train.h) is the loop over epochs and steps;
// it calls every callback at each point, in list order:
//   ReduceLROnPlateau   on_epoch_begin: the learning rate the history calls for
//   TerminateOnNaN      on_epoch_begin: remembers the weights; on_epoch_trained: a non-finite
//                       training loss restores them and stops (a failed run)
//   HistoryRecorder     on_epoch_end: the epoch's logs into the History (Keras's History)
//   EarlyStopping       on_epoch_end: tracks the best epoch, stops, restores its weights
//   ProgressLogger      the "Epoch 3/100 ..." lines, or a live bar (Keras's verbose=1)
// and then the caller's own (FitOptions: the run directory's checkpoints, rundir.h).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "model/model.h"
#include "step/optim.h"
#include "train/clock.h"
#include "train/history.h"

namespace mnist {

// What Keras passes as `logs` at an epoch's end.
struct EpochLogs {
  double loss = 0, accuracy = 0;          // the running means over the epoch's batches
  double val_loss = 0, val_accuracy = 0;  // the validation split, or else the test set
  double test_loss = 0, test_accuracy = 0;
  double seconds = 0, learning_rate = 0;
  bool has_validation = false;  // val_* is a validation split (not the test set)
};

// What callbacks read and change while fit() runs: Keras's model, optimizer and stop_training.
struct FitState {
  FitState(Model m, KerasOptimizer& o, const TrainingConfig& c, History& h, std::map<std::string, torch::Tensor>& best, int64_t steps_per_epoch)
      : model(std::move(m)), optimizer(o), config(c), history(h), best_state(best), steps(steps_per_epoch) {}
  Model model;
  KerasOptimizer& optimizer;
  const TrainingConfig& config;
  History& history;
  std::map<std::string, torch::Tensor>& best_state;  // early stopping's best weights (restore_best_weights)
  int64_t steps = 0;                                  // optimizer steps per epoch
  bool stop_training = false;                         // set by a callback: fit() returns after this epoch
  bool diverged = false;                              // it stopped because training failed
  std::string stopped_because;                        // why, when stop_training
  bool interrupted_in_epoch = false;                  // fit() is returning from inside an epoch (a signal)
};

// What keras.callbacks.EarlyStopping has concluded after the history's epochs. A pure function
// of the history, so a resumed run needs only the best epoch's weights.
struct EarlyStoppingState {
  int64_t best_epoch = -1;  // -1: none yet (before start_from_epoch)
  int64_t wait = 0;
  bool stop = false;
};
EarlyStoppingState early_stopping_state(const History& history, const EarlyStoppingConfig& config);

// The learning rate keras.callbacks.ReduceLROnPlateau has set after the history's epochs.
double plateau_learning_rate(const History& history, const ReduceLROnPlateauConfig& config, double initial);

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_epoch_begin(int64_t /*epoch*/, FitState&) {}
  // After each step. `running` gives the epoch's running means and seconds so far: it reads the
  // device and the clock, so a callback calls it only when it uses them.
  virtual void on_batch_end(int64_t /*step*/, const std::function<EpochLogs()>& /*running*/, FitState&) {}
  // After the epoch's steps, before it is evaluated. A callback that sets stop_training here ends
  // the run without evaluating or recording the epoch.
  virtual void on_epoch_trained(int64_t /*epoch*/, double /*loss*/, FitState&) {}
  virtual void on_epoch_end(int64_t /*epoch*/, const EpochLogs&, FitState&) {}
  virtual void on_train_end(FitState&) {}
};

class ReduceLROnPlateau : public Callback {
 public:
  void on_epoch_begin(int64_t epoch, FitState& s) override;
};

class TerminateOnNaN : public Callback {
 public:
  void on_epoch_begin(int64_t epoch, FitState& s) override;
  void on_epoch_trained(int64_t epoch, double loss, FitState& s) override;

 private:
  torch::Tensor params_before_;                   // the flat weights the epoch started from
  OptimizerState optimizer_before_;  // and the optimizer's state
};

class HistoryRecorder : public Callback {
 public:
  void on_epoch_end(int64_t epoch, const EpochLogs& logs, FitState& s) override;
};

class EarlyStopping : public Callback {
 public:
  void on_epoch_end(int64_t epoch, const EpochLogs& logs, FitState& s) override;
};

// Keras's per-epoch lines on `out`; with `live_bar` (a terminal) a progress bar redrawn in place.
class ProgressLogger : public Callback {
 public:
  ProgressLogger(std::ostream& out, bool live_bar) : out_(out), live_bar_(live_bar) {}
  void on_epoch_begin(int64_t epoch, FitState& s) override;
  void on_batch_end(int64_t step, const std::function<EpochLogs()>& running, FitState& s) override;
  void on_epoch_trained(int64_t epoch, double loss, FitState& s) override;
  void on_epoch_end(int64_t epoch, const EpochLogs& logs, FitState& s) override;
  void on_train_end(FitState& s) override;

 private:
  std::ostream& out_;
  bool live_bar_;
  Clock::time_point last_draw_;  // the bar's last drawing
};

// Keras's LambdaCallback, at an epoch's end: f(history so far).
class LambdaCallback : public Callback {
 public:
  explicit LambdaCallback(std::function<void(const History&)> f) : f_(std::move(f)) {}
  void on_epoch_end(int64_t, const EpochLogs&, FitState& s) override { f_(s.history); }

 private:
  std::function<void(const History&)> f_;
};

// The callbacks a config asks for, in the order fit() calls them (those of the table above that
// apply; the logger only with `log`).
std::vector<std::unique_ptr<Callback>> standard_callbacks(const TrainingConfig& config, std::ostream* log, bool live_bar);

// Keras's progress line: "1875/1875 [====...] 1s 498us/step - accuracy: ... - loss: ...".
std::string progress_line(int64_t step, int64_t steps, double seconds, const std::string& metrics);
std::string format_metric(const char* name, double v);

}  // namespace mnist
