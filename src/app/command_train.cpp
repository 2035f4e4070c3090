// command_train: `mnist train`. The data flows one way: flags (or the run to resume) -> config ->
// checked inputs -> run directory -> fit, checkpointing every epoch -> the run's files (metrics,
// figures, model.pt). Everything is loaded and checked before the run directory exists, so a bad
// input leaves nothing behind.
#include "app/command_train.h"
#include "interop/rundir.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iomanip>
#include <iostream>

#include "app/command.h"
#include "config/errors.h"
#include "config/user_input.h"
#include "interop/checkpoint.h"
#include "interop/export.h"
#include "interop/keras_import.h"
#include "interop/tensorboard_log.h"
#include "train/clock.h"
#include "train/metrics.h"
#include "train/train.h"
#ifdef MNIST_WITH_OPENCV
#include "report/plot.h"
#endif

namespace mnist {

ResumePlan plan_resume(const std::string& run_dir) {
  ResumePlan plan;
  const fs::path file = fs::path(run_dir) / "checkpoint.pt";
  if (!fs::exists(file)) {
    if (!fs::exists(fs::path(run_dir) / "config.json"))
      throw std::runtime_error(run_dir + " is not a run directory: it holds neither checkpoint.pt nor config.json");
    plan.action = ResumePlan::Action::restart;
    plan.config = load_config_file((fs::path(run_dir) / "config.json").string());
    plan.message = run_dir + " holds no checkpoint (it stopped before its first epoch was saved): training it again from its config.json";
    return plan;
  }
  plan.checkpoint = read_checkpoint(file);
  plan.config = plan.checkpoint->config;
  const History& history = plan.checkpoint->history;
  const int64_t epochs = plan.config.training.epochs;
  const bool results = fs::exists(fs::path(run_dir) / "metrics.json") && fs::exists(fs::path(run_dir) / "model.pt");
  if (history.epochs() >= static_cast<size_t>(epochs) && plan.checkpoint->progress.step == 0 && !results) {
    plan.message = "run " + run_dir + " trained all " + std::to_string(epochs) + " epochs but stopped before its results were written: writing them";
  } else if (history.epochs() >= static_cast<size_t>(epochs) && plan.checkpoint->progress.step == 0) {
    plan.action = ResumePlan::Action::finished;
    plan.message = "run " + run_dir + " already finished all " + std::to_string(epochs) + " epochs; nothing to resume";
  } else if (early_stopping_state(history, plan.config.training.early_stopping).stop) {
    plan.action = ResumePlan::Action::stopped_early;
    plan.message = "run " + run_dir + " was ended by early stopping after " + std::to_string(history.epochs()) + " epochs; nothing to resume";
  }
  return plan;
}

namespace {

// Set by SIGINT/SIGTERM/SIGHUP while training; the trainer finishes its step and returns. Signal handlers
// can only reach globals, so this is the program's one piece of global state.
std::atomic<bool> g_stop_requested{false};
volatile std::sig_atomic_t g_signal = 0;
extern "C" void request_stop(int sig) {
  g_signal = sig;
  g_stop_requested.store(true);
  std::signal(sig, SIG_DFL);  // a second Ctrl-C ends the program at once
}
const char* signal_name() { return g_signal == SIGTERM ? "SIGTERM" : g_signal == SIGHUP ? "SIGHUP" : "SIGINT"; }
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};  // Ctrl-C, kill, the terminal closed

// A stop signal from here on ends training at a step boundary, saving a checkpoint; before the run
// directory exists it ends the command with one line. The signals are unblocked in case the
// process was started with them blocked.
void catch_stop_signals() {
  g_stop_requested = false;
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : kStopSignals) {
    std::signal(sig, request_stop);
    sigaddset(&stop_signals, sig);
  }
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
}

// Where a run's wall time goes: metrics.json's "seconds" and the run's last line.
struct RunSeconds {
  double loading = 0, training = 0, evaluation = 0, checkpoints = 0, figures = 0, exporting = 0;
  nlohmann::json to_json(double total) const {
    return {{"loading", loading}, {"training", training},   {"evaluation", evaluation}, {"checkpoints", checkpoints},
            {"figures", figures}, {"export", exporting}, {"total", total}};
  }
};

// A run being trained: what it was started from, and its data and model once loaded.
struct TrainRun {
  explicit TrainRun(const TrainFlags& f) : flags(f) {}
  const TrainFlags& flags;
  Config config;
  std::optional<Checkpoint> checkpoint;  // set when resuming
  bool reuse_dir = false;                // resuming (or restarting) trains in the run's own directory
  torch::Device device = torch::kCPU;
  Split all_train, train, validation, test;  // all_train on the CPU (its checksum); the rest on `device`
  Model model{nullptr};
  torch::Tensor data_order;  // undefined: our own shuffle
  fs::path dir;
  Clock::time_point start = Clock::now();
  RunSeconds seconds;

  std::string origin() const { return flags.resume + "/checkpoint.pt"; }
};

// The weights to start from: the checkpoint's, --initial-weights, or the config's initialisers.
Model initial_model(const TrainRun& r) {
  if (r.checkpoint) return model_with_params(r.config, r.checkpoint->params, r.origin(), r.checkpoint->checksum);
  if (r.flags.initial_weights.empty()) return Model(r.config.model, kImageShape, r.config.training.seed);
  return model_with_params(r.config, read_keras_weights(r.flags.initial_weights, r.config), "--initial-weights " + r.flags.initial_weights);
}

// The data order to train on: --data-order's, else the checkpoint's (checked against this split).
torch::Tensor initial_data_order(const TrainRun& r) {
  if (!r.flags.data_order.empty()) return read_data_order(r.flags.data_order, r.config.training.epochs, r.train.size());
  if (!r.checkpoint || !r.checkpoint->data_order.defined()) return {};
  const torch::Tensor& order = r.checkpoint->data_order;
  if (order.size(1) > r.train.size() || order.min().item<int64_t>() < 0 || order.max().item<int64_t>() >= r.train.size())
    throw std::runtime_error(r.origin() + " holds a data order that does not index this training split of " +
                             std::to_string(r.train.size()) + " samples");
  return order;
}

// Refuses a run whose training would not fit in this machine's memory (train.h training_memory),
// before anything is written. CUDA memory is checked by CUDA.
void check_memory(const TrainRun& r) {
  if (!r.device.is_cpu()) return;
  const TrainingMemory needed = training_memory(*r.model, r.config.training, r.train.size());
  const double physical = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (physical > 0 && needed.bytes > 0.8 * physical) {
    char text[256];
    std::snprintf(text, sizeof text, "training this config needs about %.1f GiB (%.3g parameters, batch %lld); this machine has %.1f GiB",
                  needed.bytes / (1 << 30), static_cast<double>(needed.parameters), static_cast<long long>(needed.batch),
                  physical / (1 << 30));
    throw UsageError(std::string(text) + ": use fewer units or filters, or a smaller batch_size");
  }
}

// Loads and checks the data, the starting weights and the data order for `r.config`.
void load_inputs(TrainRun& r) {
  r.device = resolve_device(r.flags.device);
  check_out_dir(r.flags.out);
  const std::string data_dir = data_dir_of(r.flags.data, r.config);
  r.all_train = load_checked_split(data_dir, /*train=*/true, r.config);
  const Split test = load_checked_split(data_dir, /*train=*/false, r.config);
  if (r.checkpoint && !r.checkpoint->data_checksum.empty() && r.checkpoint->data_checksum != r.all_train.checksum)
    throw UsageError(r.flags.resume + " was trained on other data (training files' checksum " + r.checkpoint->data_checksum + "; " +
                     data_dir + " holds " + r.all_train.checksum + "): resume it with the --data it was trained on");
  auto [train, validation] = split_validation(r.all_train, r.config.training.validation_split);
  r.train = train.to(r.device);
  r.validation = validation.size() ? validation.to(r.device) : Split{};
  r.test = test.to(r.device);
  r.model = initial_model(r);
  r.data_order = initial_data_order(r);
  check_memory(r);
}

// The run directory (new, or the resumed run's) and the run's first lines.
void open_run_dir(TrainRun& r) {
  r.dir = r.reuse_dir ? fs::path(r.flags.resume) : create_run_dir(r.flags.out, r.config.name);
  // The checkpoint is the run's record: files derived from it are rewritten from it, in case a kill
  // left them ahead of it.
  if (r.checkpoint) save_history(r.dir, r.checkpoint->history);
  std::cout << r.model->summary(r.config.name) << "Training " << r.config.name << " on " << r.train.size() << " "
            << name_of(r.config.dataset) << " samples"
            << (r.validation.size() ? ", validating on " + std::to_string(r.validation.size()) : "") << " (" << r.device.str()
            << "), run directory " << printable(r.dir.string()) << "\n";
}

// The trainer picks up where the run stands: its data order, and a checkpoint's optimizer state,
// history and position.
void prepare_trainer(const TrainRun& r, Trainer& trainer) {
  if (r.data_order.defined()) trainer.set_data_order(r.data_order);
  if (!r.flags.initial_weights.empty()) std::cout << "Initial weights from " << printable(r.flags.initial_weights) << "\n";
  if (!r.flags.data_order.empty()) std::cout << "Data order from " << printable(r.flags.data_order) << "\n";
  if (!r.checkpoint) return;
  const Checkpoint& c = *r.checkpoint;
  trainer.optimizer().load_state(c.optimizer);
  trainer.resume(c.history, c.progress, c.best_state);
  std::cout << "Resuming after " << c.history.epochs() << " of " << r.config.training.epochs << " epochs"
            << (c.progress.step ? " and " + std::to_string(c.progress.step) + " steps of the next" : "") << "\n";
}

// Trains the remaining epochs, checkpointing after each; SIGINT/SIGTERM end it at a step boundary.
FitResult fit_run(TrainRun& r, Trainer& trainer, RunCheckpoint& checkpoint, TensorBoardLog* tensorboard) {
  FitOptions options;
  options.log = &std::cout;
  options.progress_bar = ::isatty(STDOUT_FILENO);
  options.callbacks = {&checkpoint};
  if (tensorboard) options.callbacks.push_back(tensorboard);
  options.stop = &g_stop_requested;
  r.seconds.loading = seconds_since(r.start);
  const auto fit_start = Clock::now();
  FitResult fit = trainer.fit(r.train, r.validation, r.test, options);
  r.seconds.evaluation = fit.evaluation_seconds;
  r.seconds.training = seconds_since(fit_start) - fit.evaluation_seconds - checkpoint.seconds;
  end_cleanly_on_signals();
  return fit;
}

// An interrupted run: its checkpoint, where it stopped and how to resume it.
int save_interrupted(const TrainRun& r, Trainer& trainer, RunCheckpoint& checkpoint, const FitResult& fit) {
  checkpoint.save(fit.history);
  const int64_t steps = trainer.steps_per_epoch(r.train), epochs = r.config.training.epochs;
  const std::string where = trainer.progress().step == 0
                                ? "after epoch " + std::to_string(fit.history.epochs()) + "/" + std::to_string(epochs)
                                : "in epoch " + std::to_string(fit.history.epochs() + 1) + "/" + std::to_string(epochs) +
                                      " after step " + std::to_string(trainer.progress().step) + "/" + std::to_string(steps);
  std::cout << "Interrupted (" << signal_name() << ") " << where << "; saved " << printable((r.dir / "checkpoint.pt").string())
            << ".\nResume with: build/mnist train --resume " << printable(r.dir.string()) << (r.flags.data.empty() ? "" : " --data " + printable(r.flags.data))
            << "\n";
  return 128 + static_cast<int>(g_signal);
}

// A finished run's files: the test evaluation, figures, model.pt and metrics.json.
nlohmann::json write_results(TrainRun& r, RunCheckpoint& checkpoint, TensorBoardLog* tensorboard, const FitResult& fit,
                             Evaluation& test_eval) {
  auto phase = Clock::now();
  test_eval = evaluate(r.model, r.test, r.config.training);
  r.seconds.evaluation += seconds_since(phase);
  if (fit.history.epochs() == 0 || !fit.stopped_early.empty()) checkpoint.save(fit.history);
  r.seconds.checkpoints = checkpoint.seconds;
  phase = Clock::now();
#ifdef MNIST_WITH_OPENCV
  const MistakeSample mistakes = most_confident_mistakes(r.model, r.test, r.config.training, kGallerySize);
  save_run_figures(r.dir, r.config.name, fit.history, test_eval, class_names(r.config.dataset), &mistakes);
#else
  figures_skipped("figures");
#endif
  if (tensorboard) tensorboard->finish(fit.history.epochs(), /*success=*/!fit.diverged);
  r.seconds.figures = seconds_since(phase);
  phase = Clock::now();
  export_model(*r.model, r.config, r.dir / "model.pt");
  r.seconds.exporting = seconds_since(phase);
  nlohmann::json metrics = metrics_json(test_eval, class_names(r.config.dataset));
  metrics["epochs_completed"] = fit.history.epochs();
  if (!fit.stopped_early.empty()) metrics["stopped_early"] = fit.stopped_early;
  metrics["seconds"] = r.seconds.to_json(seconds_since(r.start));
  write_file_atomic(r.dir / "metrics.json", metrics.dump(2) + "\n");
  return metrics;
}

// The run's closing lines; a diverged run is a failure, with its one line on stderr too.
int report_finished(const TrainRun& r, const FitResult& fit, const Evaluation& test_eval, const nlohmann::json& metrics) {
  const RunSeconds& s = r.seconds;
  std::cout << std::fixed << std::setprecision(4);
  if (fit.history.epochs() > 0) std::cout << "final training accuracy (Keras running mean): " << fit.history.accuracy.back() << "\n";
  std::cout << "test accuracy: " << test_eval.accuracy << "  test loss: " << test_eval.loss << "\n" << std::setprecision(2)
            << "time: " << metrics["seconds"]["total"].get<double>() << " s (loading " << s.loading << ", training " << s.training
            << ", evaluation " << s.evaluation << ", checkpoints " << s.checkpoints << ", figures " << s.figures << ", export "
            << s.exporting << ")\nrun saved in " << printable(r.dir.string()) << "\n";
  if (!fit.diverged) return 0;
  std::cerr << "mnist: training stopped: " << fit.stopped_early << "; run saved in " << printable(r.dir.string()) << "\n";
  return 1;
}

// The config and checkpoint a run starts from: the flags', or the resumed run's (printing why
// there is nothing to do, where there is not).
std::optional<TrainRun> start_run(const TrainFlags& t, bool config_flags) {
  TrainRun r(t);
  if (t.resume.empty()) {
    r.config = resolve_config(t.config);
    return r;
  }
  if (config_flags || !t.out.empty() || !t.initial_weights.empty() || !t.data_order.empty())
    throw UsageError("--resume continues a run with its own config, directory, weights and data order; drop --config, --set, "
                     "--epochs, --seed, --out, --initial-weights and --data-order");
  remove_temporaries(t.resume);  // what a killed write left behind
  ResumePlan plan = plan_resume(t.resume);
  if (!plan.message.empty()) std::cout << printable(plan.message) << "\n";
  if (plan.action == ResumePlan::Action::finished || plan.action == ResumePlan::Action::stopped_early) return std::nullopt;
  r.config = std::move(plan.config);
  r.checkpoint = std::move(plan.checkpoint);
  r.reuse_dir = true;
  return r;
}

int run_train(const TrainFlags& t, bool config_flags) {
  if (!t.seeds.empty()) return run_seeds(t);
  apply_threads(t.threads);
  catch_stop_signals();
  std::optional<TrainRun> run = start_run(t, config_flags);
  if (!run) return 0;
  TrainRun& r = *run;
  load_inputs(r);
  Trainer trainer(r.model, r.config.training, r.device);  // its optimizer state, allocated before the run directory exists
  if (g_stop_requested) {  // stopped while the data and the model were prepared: nothing is written yet
    std::cerr << "mnist: interrupted (" << signal_name() << ") before training began; nothing was written\n";
    return 128 + static_cast<int>(g_signal);
  }
  open_run_dir(r);
  prepare_trainer(r, trainer);
  RunCheckpoint checkpoint(r.dir, *r.model, r.config, trainer, r.all_train.checksum);
  if (!r.checkpoint) {  // the run's start, weights and data order included, before its first step: a kill resumes from it
    checkpoint.save(History{});
    write_file_atomic(r.dir / "config.json", to_json(r.config).dump(2) + "\n");
    // A run becomes runs/latest once it can be resumed: one that fails to start never does.
    const std::string not_linked = r.flags.out.empty() ? point_latest_at(r.dir) : "";
    if (!not_linked.empty()) std::cerr << "mnist: note: " << not_linked << "; this run is " << printable(r.dir.string()) << "\n";
  }
  std::optional<TensorBoardLog> tensorboard;
  if (r.config.training.tensorboard.enabled) tensorboard.emplace(r.dir, r.config, /*resumed=*/r.checkpoint.has_value());
  TensorBoardLog* const log = tensorboard ? &*tensorboard : nullptr;
  const FitResult fit = fit_run(r, trainer, checkpoint, log);
  // A signal during the last step ends the run there too: its results are left to --resume.
  if (fit.interrupted || g_stop_requested) return save_interrupted(r, trainer, checkpoint, fit);
  Evaluation test_eval;
  const nlohmann::json metrics = write_results(r, checkpoint, log, fit, test_eval);
  return report_finished(r, fit, test_eval, metrics);
}

}  // namespace

Command add_train_command(CLI::App& app) {
  auto t = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand("train", "train a config; writes a run directory");
  add_config_flags(*cmd, t->config, true);
  cmd->add_option("--resume", t->resume, "continue an interrupted run from RUN_DIR/checkpoint.pt");
  add_device_option(*cmd, t->device);
  add_data_option(*cmd, t->data);
  cmd->add_option("--out", t->out, "run directory (default: runs/<name>-<timestamp>); must not exist or be empty");
  cmd->add_option("--initial-weights", t->initial_weights,
                  "start from these Keras weights: FILE.json (model.get_weights() list), FILE.weights.h5 or FILE.keras");
  cmd->add_option("--data-order", t->data_order,
                  "train on these samples in this order instead of shuffling: a JSON list per epoch of indices into the training split");
  add_threads_option(*cmd, t->threads, "LibTorch");
  cmd->add_option("--seeds", t->seeds, "train one run per seed (A-B or A,B,...) under --out DIR/seed<S>, then their summary");
  cmd->add_option("--jobs", t->jobs, "with --seeds: runs at once (0: one per core)")->check(whole_number(0, 256));
  return {cmd, [t, cmd] { return run_train(*t, config_flags_given(*cmd)); }};
}

}  // namespace mnist
