// train: the fit loop, Keras's running metrics and progress line, and the non-finite-loss stop.
#include "train/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>

#include "data/rng.h"
#include "fused/fused.h"
#include "train/clock.h"
#include "train/float_env.h"
#include "train/metrics.h"

namespace mnist {
namespace {

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

// The optimizer takes over the parameters where they will live, so move the model first.
std::vector<torch::Tensor> parameters_on(Model& model, torch::Device device) {
  model->to(device);
  return model->parameters();
}

}  // namespace

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

torch::Tensor epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  // splitmix64 of (seed, epoch): neighbouring seeds and epochs get unrelated streams.
  const uint64_t z = splitmix64(seed * kGoldenGamma + static_cast<uint64_t>(epoch) + kSeedBasis);
  auto gen = at::detail::createCPUGenerator(z);
  return torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
}

double training_bytes(const ModelImpl& model, const TrainingConfig& config, int64_t samples) {
  int64_t parameters = 0, activations = 0;
  for (const auto& [name, tensor] : model.state()) parameters += tensor.numel();
  for (const auto& layer : model.layers()) activations += numel(layer->output_shape);
  const int64_t batch = std::min(config.batch_size, std::max<int64_t>(samples, 1));
  return 4.0 * (24.0 * static_cast<double>(parameters) + 3.0 * static_cast<double>(batch) * static_cast<double>(activations)) +
         static_cast<double>(kEvaluationBytes);
}

std::unique_ptr<TrainingStep> make_training_step(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config,
                                                 torch::Device device, bool kernels_on_cpu, std::string& why_not_fused) {
  why_not_fused = fused_unsupported(model, config, device);
  if (!why_not_fused.empty()) return make_autograd_step(model, optimizer, config, device);
  if (kernels_on_cpu || device.is_cuda()) return make_kernel_step(model, optimizer, config);
  return make_cpu_step(model, optimizer, config);
}

Trainer::Trainer(Model model, TrainingConfig config, torch::Device device)
    : model_(std::move(model)),
      config_(std::move(config)),
      device_(device),
      optimizer_(parameters_on(model_, device_), config_.optimizer),
      step_(make_training_step(model_, optimizer_, config_, device_, /*kernels_on_cpu=*/false, fused_reason_)) {}

void Trainer::resume(History history, Progress progress, std::map<std::string, torch::Tensor> best_state) {
  history_ = std::move(history);
  progress_ = progress;
  best_state_ = std::move(best_state);
  for (auto& [name, t] : best_state_) t = t.to(device_);
}

bool Trainer::early_stop() {
  const EarlyStoppingConfig& config = config_.early_stopping;
  const EarlyStoppingState s = early_stopping_state(history_, config);
  if (config.restore_best_weights && s.best_epoch == static_cast<int64_t>(history_.epochs()) - 1) {
    best_state_.clear();
    for (const auto& [name, t] : model_->state()) best_state_[name] = t.detach().clone();
  }
  if (!s.stop) return false;
  if (config.restore_best_weights && !best_state_.empty()) model_->load_state(best_state_, "the best epoch's weights");
  return true;
}

void Trainer::run_kernels_on_cpu() {
  if (fused_reason_.empty()) step_ = make_training_step(model_, optimizer_, config_, device_, /*kernels_on_cpu=*/true, fused_reason_);
}

std::string Trainer::step_kind() const {
  const std::string step = fused_reason_.empty() ? step_->name() : step_->name() + " (" + fused_reason_ + ")";
  return graph_ ? step + ", cuda graph" : step;
}

void Trainer::prepare(const Split& train) {
  const int64_t n = epoch_size(train), steps = steps_per_epoch(train);
  if (bound_.images.defined() && bound_.images.is_same(train.images) && bound_.labels.is_same(train.labels)) return;
  bound_ = train;
  const auto on_device = torch::TensorOptions().device(device_);
  order_ = torch::empty({n}, on_device.dtype(torch::kLong));
  table_ = torch::empty({steps, 2}, on_device.dtype(optimizer_.flat_params().scalar_type()));
  loss_sum_ = torch::zeros({}, train.images.options());
  correct_ = torch::zeros({}, train.labels.options());
  graph_.reset();
  warmed_up_ = false;
  if (cuda_graph_unsupported(model_, config_, device_, steps).empty()) graph_ = std::make_unique<EpochGraph>(device_);
}

Batch Trainer::batch(const Split& train, int64_t epoch, int64_t step) const {
  const int64_t start = step * config_.batch_size;
  return {train, epoch, step, start, std::min(config_.batch_size, epoch_size(train) - start), order_, table_, loss_sum_, correct_};
}

void Trainer::fill_epoch_buffers(const Split& train, int64_t epoch) {
  const int64_t n = epoch_size(train), steps = steps_per_epoch(train), first = progress_.step;
  order_.copy_(data_order_.defined() ? data_order_[epoch]
               : config_.shuffle      ? epoch_permutation(n, config_.seed, epoch)
                                      : torch::arange(n, torch::kLong));
  const bool scheduled = config_.lr_schedule.name != Schedule::constant;
  const int64_t iterations = optimizer_.iterations(), total_steps = steps * config_.epochs;
  auto learning_rate = [&](int64_t i) {  // Keras evaluates the schedule at `iterations`, the steps taken before
    return scheduled ? scheduled_learning_rate(config_.lr_schedule, config_.optimizer.learning_rate, iterations + i, total_steps)
                     : optimizer_.learning_rate();
  };
  table_.narrow(0, first, steps - first).copy_(optimizer_.step_table(steps - first, learning_rate));
  if (scheduled) optimizer_.set_learning_rate(learning_rate(steps - first - 1));  // as History logs it
  loss_sum_.fill_(progress_.loss_sum);
  correct_.fill_(static_cast<int64_t>(progress_.correct));
}

int64_t Trainer::run_steps(const Split& train, int64_t epoch, const FitOptions& options) {
  const int64_t n = epoch_size(train), batch_size = config_.batch_size, steps = steps_per_epoch(train);
  const auto t0 = Clock::now();
  auto last_draw = t0;
  for (int64_t step = progress_.step; step < steps; ++step) {
    step_->step(batch(train, epoch, step));
    optimizer_.count_steps(1);
    // The live bar reads the running metrics (a device sync) at most ten times a second.
    if (options.progress_bar && options.log && step + 1 < steps && seconds_since(last_draw) > 0.1) {
      last_draw = Clock::now();
      const double seen = static_cast<double>(std::min(n, (step + 1) * batch_size));
      *options.log << "\r" << progress_line(step + 1, steps, progress_.seconds + seconds_since(t0),
                                            format_metric("accuracy", correct_.item<double>() / seen) +
                                                format_metric("loss", loss_sum_.item<double>() / seen))
                   << "\033[K" << std::flush;
    }
    if (options.stop && options.stop->load(std::memory_order_relaxed) && step + 1 < steps) return step + 1;
  }
  warmed_up_ = true;
  return steps;
}

void Trainer::replay_epoch(const Split& train, int64_t epoch) {
  const int64_t steps = steps_per_epoch(train);
  if (!graph_->captured())
    graph_->capture([&] {
      for (int64_t step = 0; step < steps; ++step) step_->step(batch(train, epoch, step));
    });
  graph_->replay();
  optimizer_.count_steps(steps);
}

bool Trainer::train_epoch(const Split& train, int64_t epoch, const FitOptions& options, double& loss_sum, double& correct) {
  const int64_t steps = steps_per_epoch(train);
  fill_epoch_buffers(train, epoch);
  const auto t0 = Clock::now();
  model_->train();
  step_->begin_epoch(train);  // on the CPU the fused step's first epoch pays for its sparse rows
  int64_t next = steps;
  if (graph_ && progress_.step == 0 && warmed_up_)
    replay_epoch(train, epoch);
  else
    next = run_steps(train, epoch, options);
  step_->end_epoch();
  // Waits for the device: the epoch's time is its work's, not its queuing's.
  loss_sum = loss_sum_.item<double>();
  correct = correct_.item<double>();
  if (next < steps) {
    progress_ = {next, loss_sum, correct, progress_.seconds + seconds_since(t0)};
    return false;
  }
  progress_.seconds += seconds_since(t0);
  return true;
}

FitResult Trainer::fit(const Split& train, const Split& validation, const Split& test, const FitOptions& options) {
  const FlushDenormals as_tensorflow;  // float_env.h
  FitResult result;
  History& h = history_;
  const int64_t n = epoch_size(train), steps = steps_per_epoch(train);
  const bool has_validation = validation.size() > 0;
  if (data_order_.defined() && (data_order_.size(0) < config_.epochs || n > train.size()))
    throw std::invalid_argument("Trainer::fit: the given data order does not cover every epoch, or is longer than the data");
  prepare(train);
  // On CUDA the whole run goes to the graph's stream: the first epoch is the capture's warm-up.
  std::optional<EpochGraph::StreamScope> on_graph_stream;
  if (graph_) on_graph_stream.emplace(*graph_);
  torch::Tensor params_before = torch::empty_like(optimizer_.flat_params());
  for (int64_t epoch = static_cast<int64_t>(h.epochs()); epoch < config_.epochs; ++epoch) {
    if (config_.reduce_lr_on_plateau.enabled)
      optimizer_.set_learning_rate(plateau_learning_rate(h, config_.reduce_lr_on_plateau, config_.optimizer.learning_rate));
    // What this epoch (or its resumed part) started from, to fall back on if it ends non-finite.
    params_before.copy_(optimizer_.flat_params());
    const auto optimizer_before = optimizer_.state();
    if (options.log && options.progress_bar)
      *options.log << "Epoch " << epoch + 1 << "/" << config_.epochs << "\n";

    double loss_sum = 0, correct = 0;
    if (!train_epoch(train, epoch, options, loss_sum, correct)) {
      result.interrupted = true;
      if (options.log && options.progress_bar) *options.log << "\n";
      break;
    }
    const double loss = loss_sum / static_cast<double>(n);
    const double accuracy = correct / static_cast<double>(n);
    const double seconds = progress_.seconds;
    progress_ = Progress{};

    if (!std::isfinite(loss)) {
      torch::NoGradGuard no_grad;
      optimizer_.flat_params().copy_(params_before);
      optimizer_.load_state(optimizer_before);
      std::ostringstream why;
      why << "the training loss became non-finite (" << loss << ") in epoch " << epoch + 1;
      if (config_.loss.semantics == LossSemantics::renormalized && !config_.loss.from_logits)
        why << ": with \"renormalized\" semantics a batch whose output units all underflow to 0 divides 0 by 0";
      why << "; kept the weights this epoch started from (" << (epoch == 0 ? "the initial weights" : "the last finite ones") << ")";
      result.stopped_early = why.str();
      result.diverged = true;
      if (options.log) *options.log << (options.progress_bar ? "\n" : "") << "Stopped: " << result.stopped_early << "\n";
      break;
    }

    const auto evaluation_start = Clock::now();
    const Evaluation test_eval = evaluate(model_, test, config_);
    const Evaluation val_eval = has_validation ? evaluate(model_, validation, config_) : test_eval;
    result.evaluation_seconds += seconds_since(evaluation_start);
    h.loss.push_back(loss);
    h.accuracy.push_back(accuracy);
    h.val_loss.push_back(val_eval.loss);
    h.val_accuracy.push_back(val_eval.accuracy);
    h.test_loss.push_back(test_eval.loss);
    h.test_accuracy.push_back(test_eval.accuracy);
    h.epoch_seconds.push_back(seconds);
    h.learning_rate.push_back(optimizer_.learning_rate());
    const bool stop = early_stop();

    if (options.log) {
      std::string metrics = format_metric("accuracy", accuracy) + format_metric("loss", loss) +
                            format_metric("val_accuracy", val_eval.accuracy) + format_metric("val_loss", val_eval.loss);
      if (has_validation) metrics += format_metric("test_accuracy", test_eval.accuracy);
      const std::string line = progress_line(steps, steps, seconds, metrics);
      if (options.progress_bar)
        *options.log << "\r" << line << "\033[K\n" << std::flush;
      else
        *options.log << "Epoch " << epoch + 1 << "/" << config_.epochs << "  " << line << "\n" << std::flush;
    }
    if (stop) {
      const EarlyStoppingState es = early_stopping_state(h, config_.early_stopping);
      result.stopped_early = "early stopping: " + std::string(name_of(config_.early_stopping.monitor)) + " has not improved for " +
                             std::to_string(es.wait) + " epochs (best: epoch " + std::to_string(es.best_epoch + 1) + ")" +
                             (config_.early_stopping.restore_best_weights ? "; restored that epoch's weights" : "");
      if (options.log) *options.log << "Stopped: " << result.stopped_early << "\n";
    }
    if (options.on_epoch_end) options.on_epoch_end(h);
    if (stop) break;
    if (options.stop && options.stop->load(std::memory_order_relaxed) && epoch + 1 < config_.epochs) {
      result.interrupted = true;  // asked during the epoch's last step: stop at the boundary
      break;
    }
  }
  result.history = h;
  return result;
}

}  // namespace mnist
