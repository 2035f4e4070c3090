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

// The optimizer takes over the parameters where they will live, so move the model first.
std::vector<torch::Tensor> parameters_on(Model& model, torch::Device device) {
  model->to(device);
  return model->parameters();
}

}  // namespace

torch::Tensor epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  // splitmix64 of (seed, epoch): neighbouring seeds and epochs get unrelated streams.
  const uint64_t z = splitmix64(seed * kGoldenGamma + static_cast<uint64_t>(epoch) + kSeedBasis);
  auto gen = at::detail::createCPUGenerator(z);
  return torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
}

TrainingMemory training_memory(const ModelImpl& model, const TrainingConfig& config, int64_t samples) {
  TrainingMemory m;
  int64_t activations = 0;
  for (const auto& [name, tensor] : model.state()) m.parameters += tensor.numel();
  for (const auto& layer : model.layers()) activations += numel(layer->output_shape);
  m.batch = std::min(config.batch_size, std::max<int64_t>(samples, 1));
  m.bytes = 4.0 * (24.0 * static_cast<double>(m.parameters) + 3.0 * static_cast<double>(m.batch) * static_cast<double>(activations)) +
            static_cast<double>(kEvaluationBytes);
  return m;
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

int64_t Trainer::run_steps(const Split& train, int64_t epoch, const FitOptions& options, const std::vector<Callback*>& callbacks,
                           FitState& state) {
  const int64_t n = epoch_size(train), batch_size = config_.batch_size, steps = steps_per_epoch(train);
  const auto t0 = Clock::now();
  int64_t step = progress_.step;
  // The running means and seconds so far, for a callback that asks (a device sync and a clock read).
  const std::function<EpochLogs()> running = [&] {
    const double seen = static_cast<double>(std::min(n, (step + 1) * batch_size));
    EpochLogs logs;
    logs.loss = loss_sum_.item<double>() / seen;
    logs.accuracy = correct_.item<double>() / seen;
    logs.seconds = progress_.seconds + seconds_since(t0);
    return logs;
  };
  for (; step < steps; ++step) {
    step_->step(batch(train, epoch, step));
    optimizer_.count_steps(1);
    for (Callback* c : callbacks) c->on_batch_end(step, running, state);
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

bool Trainer::train_epoch(const Split& train, int64_t epoch, const FitOptions& options, const std::vector<Callback*>& callbacks,
                          FitState& state, double& loss_sum, double& correct) {
  const int64_t steps = steps_per_epoch(train);
  fill_epoch_buffers(train, epoch);
  const auto t0 = Clock::now();
  model_->train();
  step_->begin_epoch(train);  // on the CPU the fused step's first epoch pays for its sparse rows
  int64_t next = steps;
  if (graph_ && progress_.step == 0 && warmed_up_)
    replay_epoch(train, epoch);
  else
    next = run_steps(train, epoch, options, callbacks, state);
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

EpochLogs Trainer::evaluate_epoch(const Split& validation, const Split& test, double loss, double accuracy, double seconds,
                                  FitResult& result) {
  const auto evaluation_start = Clock::now();
  EpochLogs logs;
  logs.loss = loss;
  logs.accuracy = accuracy;
  logs.seconds = seconds;
  logs.has_validation = validation.size() > 0;
  const Evaluation test_eval = evaluate(model_, test, config_);
  const Evaluation val_eval = logs.has_validation ? evaluate(model_, validation, config_) : test_eval;
  result.evaluation_seconds += seconds_since(evaluation_start);
  logs.val_loss = val_eval.loss;
  logs.val_accuracy = val_eval.accuracy;
  logs.test_loss = test_eval.loss;
  logs.test_accuracy = test_eval.accuracy;
  logs.learning_rate = optimizer_.learning_rate();
  return logs;
}

FitResult Trainer::fit(const Split& train, const Split& validation, const Split& test, const FitOptions& options) {
  const FlushDenormals as_tensorflow;  // float_env.h
  const int64_t n = epoch_size(train);
  if (data_order_.defined() && (data_order_.size(0) < config_.epochs || n > train.size()))
    throw std::invalid_argument("Trainer::fit: the given data order does not cover every epoch, or is longer than the data");
  prepare(train);
  // On CUDA the whole run goes to the graph's stream: the first epoch is the capture's warm-up.
  std::optional<EpochGraph::StreamScope> on_graph_stream;
  if (graph_) on_graph_stream.emplace(*graph_);
  const auto standard = standard_callbacks(config_, options.log, options.progress_bar);
  std::optional<LambdaCallback> lambda;
  if (options.on_epoch_end) lambda.emplace(options.on_epoch_end);
  std::vector<Callback*> callbacks;
  for (const auto& c : standard) callbacks.push_back(c.get());
  callbacks.insert(callbacks.end(), options.callbacks.begin(), options.callbacks.end());
  if (lambda) callbacks.push_back(&*lambda);

  FitResult result;
  FitState state(model_, optimizer_, config_, history_, best_state_, steps_per_epoch(train));
  for (int64_t epoch = static_cast<int64_t>(history_.epochs()); epoch < config_.epochs; ++epoch) {
    for (Callback* c : callbacks) c->on_epoch_begin(epoch, state);
    double loss_sum = 0, correct = 0;
    if (!train_epoch(train, epoch, options, callbacks, state, loss_sum, correct)) {
      result.interrupted = state.interrupted_in_epoch = true;
      break;
    }
    const double loss = loss_sum / static_cast<double>(n), seconds = progress_.seconds;
    progress_ = Progress{};
    for (Callback* c : callbacks) c->on_epoch_trained(epoch, loss, state);
    if (state.stop_training) break;
    const EpochLogs logs = evaluate_epoch(validation, test, loss, correct / static_cast<double>(n), seconds, result);
    for (Callback* c : callbacks) c->on_epoch_end(epoch, logs, state);
    if (state.stop_training) break;
    if (options.stop && options.stop->load(std::memory_order_relaxed) && epoch + 1 < config_.epochs) {
      result.interrupted = true;  // asked during the epoch's last step: stop at the boundary
      break;
    }
  }
  for (Callback* c : callbacks) c->on_train_end(state);
  result.stopped_early = state.stopped_because;
  result.diverged = state.diverged;
  result.history = history_;
  return result;
}

}  // namespace mnist
