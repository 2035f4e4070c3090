// callbacks: Keras's callbacks, each replaying what keras.callbacks does at the same point of fit().
#include "train/callbacks.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "train/clock.h"

namespace mnist {

std::string format_metric(const char* name, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " - %s: %.4f", name, v);
  return buf;
}

// Keras's progress line: "1875/1875 [==============================] 1s 0.5ms/step - accuracy: ...".
std::string progress_line(int64_t step, int64_t steps, double seconds, const std::string& metrics) {
  const int width = 30;
  const int done = static_cast<int>(width * step / std::max<int64_t>(steps, 1));
  std::string bar(static_cast<size_t>(done), '=');
  if (done < width) bar += '>' + std::string(static_cast<size_t>(width - done - 1), '.');
  const double per_step = seconds / static_cast<double>(std::max<int64_t>(step, 1));
  char timing[64];
  if (per_step >= 0.01)
    std::snprintf(timing, sizeof timing, "%.0fs %.0fms/step", seconds, per_step * 1e3);
  else if (per_step >= 0.001)
    std::snprintf(timing, sizeof timing, "%.0fs %.1fms/step", seconds, per_step * 1e3);
  else
    std::snprintf(timing, sizeof timing, "%.0fs %.0fus/step", seconds, per_step * 1e6);
  return std::to_string(step) + "/" + std::to_string(steps) + " [" + bar + "] " + timing + metrics;
}

namespace {

const std::vector<double>& monitored(const History& h, Monitor monitor) {
  if (monitor == Monitor::val_loss) return h.val_loss;
  if (monitor == Monitor::val_accuracy) return h.val_accuracy;
  if (monitor == Monitor::accuracy) return h.accuracy;
  return h.loss;
}

// Keras's mode "auto": accuracies are maximised, losses minimised; min_delta counts against the
// candidate (keras.callbacks.EarlyStopping._is_improvement, ReduceLROnPlateau.monitor_op).
bool maximised(Monitor monitor) { return monitor == Monitor::accuracy || monitor == Monitor::val_accuracy; }
bool improves(Monitor monitor, double value, double best, double min_delta) {
  return maximised(monitor) ? value - min_delta > best : value + min_delta < best;
}

}  // namespace

EarlyStoppingState early_stopping_state(const History& history, const EarlyStoppingConfig& config) {
  EarlyStoppingState s;
  if (!config.enabled) return s;
  const auto& values = monitored(history, config.monitor);
  double best = 0;
  for (int64_t epoch = 0; epoch < static_cast<int64_t>(values.size()); ++epoch) {
    if (epoch < config.start_from_epoch) continue;
    ++s.wait;
    if (s.best_epoch < 0 || improves(config.monitor, values[static_cast<size_t>(epoch)], best, config.min_delta)) {
      best = values[static_cast<size_t>(epoch)];
      s.best_epoch = epoch;
      s.wait = 0;
      continue;
    }
    if (s.wait >= config.patience && epoch > 0) {
      s.stop = true;
      break;
    }
  }
  return s;
}

double plateau_learning_rate(const History& history, const ReduceLROnPlateauConfig& config, double initial) {
  double lr = initial;
  if (!config.enabled) return lr;
  const auto& values = monitored(history, config.monitor);
  const bool maximise = maximised(config.monitor);
  double best = maximise ? -INFINITY : INFINITY;
  int64_t wait = 0, cooldown = 0;
  for (double value : values) {  // keras.callbacks.ReduceLROnPlateau.on_epoch_end, replayed
    if (cooldown > 0) {
      --cooldown;
      wait = 0;
    }
    if (improves(config.monitor, value, best, config.min_delta)) {
      best = value;
      wait = 0;
    } else if (cooldown == 0 && ++wait >= config.patience && lr > config.min_lr) {
      lr = std::max(lr * config.factor, config.min_lr);
      cooldown = config.cooldown;
      wait = 0;
    }
  }
  return lr;
}

void ReduceLROnPlateau::on_epoch_begin(int64_t, FitState& s) {
  s.optimizer.set_learning_rate(plateau_learning_rate(s.history, s.config.reduce_lr_on_plateau, s.config.optimizer.learning_rate));
}

void TerminateOnNaN::on_epoch_begin(int64_t, FitState& s) {
  // What this epoch (or its resumed part) starts from, to fall back on if it ends non-finite.
  if (!params_before_.defined()) params_before_ = torch::empty_like(s.optimizer.flat_params());
  params_before_.copy_(s.optimizer.flat_params());
  optimizer_before_ = s.optimizer.state();
}

void TerminateOnNaN::on_epoch_trained(int64_t epoch, double loss, FitState& s) {
  if (std::isfinite(loss)) return;
  {
    torch::NoGradGuard no_grad;
    s.optimizer.flat_params().copy_(params_before_);
  }
  s.optimizer.load_state(optimizer_before_);
  std::ostringstream why;
  why << "the training loss became non-finite (" << loss << ") in epoch " << epoch + 1;
  if (s.config.loss.semantics == LossSemantics::renormalized && !s.config.loss.from_logits)
    why << ": with \"renormalized\" semantics a batch whose output units all underflow to 0 divides 0 by 0";
  why << "; kept the weights this epoch started from (" << (epoch == 0 ? "the initial weights" : "the last finite ones") << ")";
  s.stop_training = true;
  s.diverged = true;
  s.stopped_because = why.str();
}

void HistoryRecorder::on_epoch_end(int64_t, const EpochLogs& logs, FitState& s) {
  History& h = s.history;
  h.loss.push_back(logs.loss);
  h.accuracy.push_back(logs.accuracy);
  h.val_loss.push_back(logs.val_loss);
  h.val_accuracy.push_back(logs.val_accuracy);
  h.test_loss.push_back(logs.test_loss);
  h.test_accuracy.push_back(logs.test_accuracy);
  h.epoch_seconds.push_back(logs.seconds);
  h.learning_rate.push_back(logs.learning_rate);
}

void EarlyStopping::on_epoch_end(int64_t, const EpochLogs&, FitState& s) {
  const EarlyStoppingConfig& config = s.config.early_stopping;
  const EarlyStoppingState es = early_stopping_state(s.history, config);
  if (config.restore_best_weights && es.best_epoch == static_cast<int64_t>(s.history.epochs()) - 1) {
    s.best_state.clear();
    for (const auto& [name, t] : s.model->state()) s.best_state[name] = t.detach().clone();
  }
  if (!es.stop) return;
  if (config.restore_best_weights && !s.best_state.empty()) s.model->load_state(s.best_state, "the best epoch's weights");
  s.stop_training = true;
  s.stopped_because = "early stopping: " + std::string(name_of(config.monitor)) + " has not improved for " + std::to_string(es.wait) +
                      " epochs (best: epoch " + std::to_string(es.best_epoch + 1) + ")" +
                      (config.restore_best_weights ? "; restored that epoch's weights" : "");
}

void ProgressLogger::on_epoch_begin(int64_t epoch, FitState& s) {
  last_draw_ = Clock::now();
  if (live_bar_) out_ << "Epoch " << epoch + 1 << "/" << s.config.epochs << "\n";
}

void ProgressLogger::on_batch_end(int64_t step, const std::function<EpochLogs()>& running, FitState& s) {
  // The live bar reads the running metrics (a device sync) at most ten times a second.
  if (!live_bar_ || step + 1 >= s.steps || seconds_since(last_draw_) <= 0.1) return;
  last_draw_ = Clock::now();
  const EpochLogs now = running();
  out_ << "\r" << progress_line(step + 1, s.steps, now.seconds, format_metric("accuracy", now.accuracy) + format_metric("loss", now.loss))
       << "\033[K" << std::flush;
}

void ProgressLogger::on_epoch_trained(int64_t, double, FitState& s) {
  if (s.diverged) out_ << (live_bar_ ? "\n" : "") << "Stopped: " << s.stopped_because << "\n";
}

void ProgressLogger::on_epoch_end(int64_t epoch, const EpochLogs& logs, FitState& s) {
  std::string metrics = format_metric("accuracy", logs.accuracy) + format_metric("loss", logs.loss) +
                        format_metric("val_accuracy", logs.val_accuracy) + format_metric("val_loss", logs.val_loss);
  if (logs.has_validation) metrics += format_metric("test_accuracy", logs.test_accuracy);
  const std::string line = progress_line(s.steps, s.steps, logs.seconds, metrics);
  if (live_bar_)
    out_ << "\r" << line << "\033[K\n" << std::flush;
  else
    out_ << "Epoch " << epoch + 1 << "/" << s.config.epochs << "  " << line << "\n" << std::flush;
  if (s.stop_training) out_ << "Stopped: " << s.stopped_because << "\n";
}

void ProgressLogger::on_train_end(FitState& s) {
  if (s.interrupted_in_epoch && live_bar_) out_ << "\n";
}

std::vector<std::unique_ptr<Callback>> standard_callbacks(const TrainingConfig& config, std::ostream* log, bool live_bar) {
  std::vector<std::unique_ptr<Callback>> callbacks;
  if (config.reduce_lr_on_plateau.enabled) callbacks.push_back(std::make_unique<ReduceLROnPlateau>());
  callbacks.push_back(std::make_unique<TerminateOnNaN>());
  callbacks.push_back(std::make_unique<HistoryRecorder>());
  if (config.early_stopping.enabled) callbacks.push_back(std::make_unique<EarlyStopping>());
  if (log) callbacks.push_back(std::make_unique<ProgressLogger>(*log, live_bar));
  return callbacks;
}

}  // namespace mnist
