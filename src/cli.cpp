// cli: the `mnist` command line (CLI11): one function per subcommand (train, evaluate, plot, compare,
// export, import-keras, predict, bench, baselines, summary); errors go up to main() as exceptions.
#include "cli.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <limits>
#include <optional>
#include <thread>
#include <iostream>

#include "baselines.h"
#include "bench.h"
#include "clock.h"
#include "compare.h"
#include "config.h"
#include "data.h"
#include "errors.h"
#include "export.h"
#include "user_input.h"
#include "keras_import.h"
#include "metrics.h"
#include "model.h"
#include "rundir.h"
#include "train.h"
#ifdef MNIST_WITH_OPENCV
#include <opencv2/core/utility.hpp>

#include "plot.h"
#include "predict.h"
#endif

namespace mnist {
namespace {

#ifndef MNIST_WITH_OPENCV
// A build without OpenCV (cmake -DMNIST_WITH_OPENCV=OFF, for machines without its headers) trains,
// evaluates, exports and benchmarks like any other; it skips the figures, saying so, and refuses
// the commands that only draw or read images.
void figures_skipped(const std::string& what) {
  std::cout << what << " not drawn: this build has no OpenCV (cmake -DMNIST_WITH_OPENCV=OFF)\n";
}
[[noreturn]] void needs_opencv(const std::string& command) {
  throw UsageError(command + " needs OpenCV, and this build has none (cmake -DMNIST_WITH_OPENCV=OFF): rebuild it with OpenCV's headers installed");
}
#endif

struct ConfigFlags {
  std::string config = "configs/paper.json";
  std::vector<std::string> sets;
  int64_t epochs = 0;  // 0: keep the config's
  int64_t seed = -1;   // -1: keep the config's
};

// A whole number from lo to hi, said plainly when it is not ("--epochs: must be a whole number from 1 to 1000000 (got 0)").
CLI::Validator whole_number(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& value) -> std::string {
        try {
          size_t used = 0;
          const long long n = std::stoll(value, &used);
          if (used == value.size() && n >= lo && n <= hi) return "";
        } catch (const std::exception&) {
        }
        return "must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + " (got " + value.substr(0, 40) + ")";
      },
      "INT in " + std::to_string(lo) + ".." + std::to_string(hi));
}

// More threads than this only add switching: four per core of this machine.
int64_t max_threads() { return 4 * std::max<int64_t>(1, std::thread::hardware_concurrency()); }

void add_config_flags(CLI::App& cmd, ConfigFlags& f, bool training_shorthands) {
  cmd.add_option("--config", f.config, "JSON config file")->capture_default_str();
  cmd.add_option("--set", f.sets, "override one config value, e.g. training.optimizer.learning_rate=0.01 (repeatable)");
  if (training_shorthands) {
    cmd.add_option("--epochs", f.epochs, "shorthand for --set training.epochs=N")->check(whole_number(1, 1000000));
    cmd.add_option("--seed", f.seed, "shorthand for --set training.seed=N")->check(whole_number(0, std::numeric_limits<int64_t>::max()));
  }
}

Config resolve_config(const ConfigFlags& f) {
  std::vector<std::string> sets = f.sets;
  if (f.epochs > 0) sets.push_back("training.epochs=" + std::to_string(f.epochs));
  if (f.seed >= 0) sets.push_back("training.seed=" + std::to_string(f.seed));
  Config c = load_config_file(f.config);
  return sets.empty() ? c : apply_overrides(c, sets);
}

torch::Device resolve_device(const std::string& flag) {
  const bool cuda = torch::cuda::is_available();
  if (flag == "cuda" && !cuda)
    throw UsageError("--device cuda: no CUDA device is available to this LibTorch build; use --device cpu (or auto)");
  return (flag == "cuda" || (flag == "auto" && cuda)) ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

std::string default_data_dir(const Config& c) { return std::string("data/") + name_of(c.dataset); }

constexpr int64_t kGallerySize = 36;  // 6 x 6 most confident mistakes

// Set by SIGINT/SIGTERM while training; the trainer finishes its step and returns. Signal handlers
// can only reach globals, so this is the program's one piece of global state.
std::atomic<bool> g_stop_requested{false};
volatile std::sig_atomic_t g_signal = 0;
extern "C" void request_stop(int sig) {
  g_signal = sig;
  g_stop_requested.store(true);
  std::signal(sig, SIG_DFL);  // a second Ctrl-C ends the program at once
}

void print_evaluation(std::ostream& out, const nlohmann::json& m, const std::string& split) {
  out << std::fixed << std::setprecision(4) << split << "_loss: " << m[split + "_loss"].get<double>() << "  " << split
      << "_accuracy: " << m[split + "_accuracy"].get<double>() << "  top_output_ties: " << m["top_output_ties"].get<int64_t>()
      << "\n\nconfusion matrix (rows: true label, columns: predicted)\n";
  for (const auto& row : m["confusion_matrix"]) {
    for (const auto& v : row) out << std::setw(6) << v.get<int64_t>();
    out << "\n";
  }
  out << "\n" << std::left << std::setw(14) << "class" << std::right << std::setw(10) << "precision" << std::setw(10)
      << "recall" << std::setw(10) << "f1" << std::setw(10) << "support\n";
  for (const auto& c : m["per_class"])
    out << std::left << std::setw(14) << c["class"].get<std::string>() << std::right << std::setw(10)
        << c["precision"].get<double>() << std::setw(10) << c["recall"].get<double>() << std::setw(10)
        << c["f1"].get<double>() << std::setw(9) << c["support"].get<int64_t>() << "\n";
  out.unsetf(std::ios::fixed);
}

// Refuses a run whose training would not fit in this machine's memory, before anything is written.
// The estimate: 24 float32 values per parameter (measured: about 22 at the peak of a fused step,
// 17 of an autograd step, counting the values, gradients, optimizer slots, flat buffers and the
// update's temporaries), each batch's layer outputs three times over, and an evaluation pass
// (kEvaluationBytes). CUDA memory is checked by CUDA.
void check_memory(const ModelImpl& model, const TrainingConfig& t, int64_t samples, torch::Device device) {
  if (!device.is_cpu()) return;
  int64_t parameters = 0, activations = 0;
  for (const auto& [name, tensor] : model.state()) parameters += tensor.numel();
  for (const auto& layer : model.layers()) activations += numel(layer->output_shape);
  const int64_t batch = std::min(t.batch_size, std::max<int64_t>(samples, 1));
  const double needed = 4.0 * (24.0 * static_cast<double>(parameters) + 3.0 * static_cast<double>(batch) * static_cast<double>(activations)) +
                        static_cast<double>(kEvaluationBytes);
  const double physical = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (physical > 0 && needed > 0.8 * physical) {
    char text[256];
    std::snprintf(text, sizeof text, "training this config needs about %.1f GiB (%.3g parameters, batch %lld); this machine has %.1f GiB",
                  needed / (1 << 30), static_cast<double>(parameters), static_cast<long long>(batch), physical / (1 << 30));
    throw UsageError(std::string(text) + ": use fewer units or filters, or a smaller batch_size");
  }
}

// `mnist train`'s own flags (the config flags are ConfigFlags).
struct TrainFlags {
  std::string resume, device = "auto", data, out;
  std::string initial_weights;  // Keras weights JSON to start from, instead of the initialisers
  std::string data_order;       // per-epoch orders to train on, instead of our shuffle
};

// Ctrl-C or SIGTERM from here on ends training at a step boundary, saving a checkpoint; before the
// run directory exists it ends the command with one line. The signals are unblocked in case the
// process was started with them blocked.
void catch_stop_signals() {
  g_stop_requested = false;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
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

int train(const ConfigFlags& flags, bool config_flags_given, const TrainFlags& t) {
  const std::string &resume = t.resume, &data_flag = t.data, &out_flag = t.out;
  const auto start = Clock::now();
  RunSeconds seconds;
  catch_stop_signals();
  std::optional<Checkpoint> checkpoint;
  bool restart = false;  // --resume of a run that stopped before its first checkpoint: train it again
  Config config;
  if (!resume.empty()) {
    if (config_flags_given || !out_flag.empty() || !t.initial_weights.empty() || !t.data_order.empty())
      throw UsageError("--resume continues a run with its own config, directory, weights and data order; drop --config, --set, "
                       "--epochs, --seed, --out, --initial-weights and --data-order");
    remove_temporaries(resume);  // what a killed write left behind
    const fs::path file = fs::path(resume) / "checkpoint.pt";
    if (!fs::exists(file)) {
      if (!fs::exists(fs::path(resume) / "config.json"))
        throw std::runtime_error(resume + " is not a run directory: it holds neither checkpoint.pt nor config.json");
      restart = true;
      config = load_config_file((fs::path(resume) / "config.json").string());
      std::cout << resume << " holds no checkpoint (it stopped before its first epoch was saved): training it again from its config.json\n";
    } else {
      checkpoint = read_checkpoint(file);
      config = checkpoint->config;
    }
    if (checkpoint && checkpoint->history.epochs() >= static_cast<size_t>(config.training.epochs) && checkpoint->progress.step == 0) {
      std::cout << "run " << resume << " already finished all " << config.training.epochs << " epochs; nothing to resume\n";
      return 0;
    }
    if (checkpoint && early_stopping_state(checkpoint->history, config.training.early_stopping).stop) {
      std::cout << "run " << resume << " was ended by early stopping after " << checkpoint->history.epochs()
                << " epochs; nothing to resume\n";
      return 0;
    }
  } else {
    config = resolve_config(flags);
  }
  const torch::Device device = resolve_device(t.device);
  check_out_dir(out_flag);
  const std::string data_dir = data_flag.empty() ? default_data_dir(config) : data_flag;

  // Load and check everything before creating the run directory, so a bad input leaves nothing behind.
  const Split all_train = load_split(data_dir, true), test_split = load_split(data_dir, false);
  check_dataset(all_train, true, config.dataset, data_dir);
  check_dataset(test_split, false, config.dataset, data_dir);
  if (checkpoint && !checkpoint->data_checksum.empty() && checkpoint->data_checksum != all_train.checksum)
    throw UsageError(resume + " was trained on other data (training files' checksum " + checkpoint->data_checksum + "; " + data_dir +
                     " holds " + all_train.checksum + "): resume it with the --data it was trained on");
  auto [train_split, validation] = split_validation(all_train, config.training.validation_split);
  const Split train_data = train_split.to(device), val_data = validation.size() ? validation.to(device) : Split{};
  const Split test_data = test_split.to(device);
  Model model = checkpoint                   ? model_with_params(config, checkpoint->params, resume + "/checkpoint.pt", checkpoint->checksum)
                : t.initial_weights.empty() ? Model(config.model, kImageShape, config.training.seed)
                                            : model_with_params(config, read_keras_weights(t.initial_weights, config),
                                                                "--initial-weights " + t.initial_weights);
  torch::Tensor data_order = checkpoint ? checkpoint->data_order : torch::Tensor();
  if (!t.data_order.empty()) data_order = read_data_order(t.data_order, config.training.epochs, train_data.size());
  if (checkpoint && data_order.defined() &&
      (data_order.size(1) > train_data.size() || data_order.min().item<int64_t>() < 0 ||
       data_order.max().item<int64_t>() >= train_data.size()))
    throw std::runtime_error(resume + "/checkpoint.pt holds a data order that does not index this training split of " +
                             std::to_string(train_data.size()) + " samples");

  check_memory(*model, config.training, train_data.size(), device);
  Trainer trainer(model, config.training, device);  // its optimizer state, allocated before the run directory exists
  if (g_stop_requested) {  // stopped while the data and the model were prepared: nothing is written yet
    std::cerr << "mnist: interrupted (" << (g_signal == SIGTERM ? "SIGTERM" : "SIGINT") << ") before training began; nothing was written\n";
    return 128 + static_cast<int>(g_signal);
  }
  const fs::path run = (checkpoint || restart) ? fs::path(resume) : create_run_dir(out_flag, config.name);
  if (!checkpoint) write_file_atomic(run / "config.json", to_json(config).dump(2) + "\n");
  // The checkpoint is the run's record: files derived from it are rewritten from it, in case a kill
  // left them ahead of it.
  if (checkpoint) save_history(run, checkpoint->history);
  std::cout << model->summary(config.name) << "Training " << config.name << " on " << train_data.size() << " "
            << name_of(config.dataset) << " samples" << (val_data.size() ? ", validating on " + std::to_string(val_data.size()) : "")
            << " (" << device.str() << "), run directory " << run.string() << "\n";

  if (data_order.defined()) trainer.set_data_order(data_order);
  if (!t.initial_weights.empty()) std::cout << "Initial weights from " << t.initial_weights << "\n";
  if (!t.data_order.empty()) std::cout << "Data order from " << t.data_order << "\n";
  if (checkpoint) {
    trainer.optimizer().load_state(checkpoint->optimizer_state);
    trainer.resume(checkpoint->history, checkpoint->progress, checkpoint->best_state);
    std::cout << "Resuming after " << checkpoint->history.epochs() << " of " << config.training.epochs << " epochs"
              << (checkpoint->progress.step ? " and " + std::to_string(checkpoint->progress.step) + " steps of the next" : "") << "\n";
  }
  FitOptions options;
  options.log = &std::cout;
  options.progress_bar = ::isatty(STDOUT_FILENO);
  options.on_epoch_end = [&](const History& h) {
    const auto written = Clock::now();
    save_checkpoint(run / "checkpoint.pt", *model, config, trainer, all_train.checksum);  // first: the run's record
    save_history(run, h);
    seconds.checkpoints += seconds_since(written);
  };
  options.stop = &g_stop_requested;
  seconds.loading = seconds_since(start);
  const auto fit_start = Clock::now();
  const FitResult fit = trainer.fit(train_data, val_data, test_data, options);
  seconds.evaluation = fit.evaluation_seconds;
  seconds.training = seconds_since(fit_start) - fit.evaluation_seconds - seconds.checkpoints;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);

  if (fit.interrupted) {
    save_checkpoint(run / "checkpoint.pt", *model, config, trainer, all_train.checksum);
    save_history(run, fit.history);
    const int64_t steps = trainer.steps_per_epoch(train_data);
    const std::string where = trainer.progress().step == 0
                                  ? "after epoch " + std::to_string(fit.history.epochs()) + "/" + std::to_string(config.training.epochs)
                                  : "in epoch " + std::to_string(fit.history.epochs() + 1) + "/" + std::to_string(config.training.epochs) +
                                        " after step " + std::to_string(trainer.progress().step) + "/" + std::to_string(steps);
    std::cout << "Interrupted (" << (g_signal == SIGTERM ? "SIGTERM" : "SIGINT") << ") " << where << "; saved "
              << (run / "checkpoint.pt").string() << ".\nResume with: build/mnist train --resume " << run.string() << "\n";
    return 128 + static_cast<int>(g_signal);
  }

  auto phase = Clock::now();
  const Evaluation test_eval = evaluate(model, test_data, config.training);
  seconds.evaluation += seconds_since(phase);
  phase = Clock::now();
  if (fit.history.epochs() == 0 || !fit.stopped_early.empty()) {
    save_checkpoint(run / "checkpoint.pt", *model, config, trainer, all_train.checksum);
    save_history(run, fit.history);
  }
  seconds.checkpoints += seconds_since(phase);
  phase = Clock::now();
#ifdef MNIST_WITH_OPENCV
  const MistakeSample mistakes = most_confident_mistakes(model, test_data, kGallerySize);
  save_run_figures(run, config.name, fit.history, test_eval, class_names(config.dataset), &mistakes);
#else
  figures_skipped("figures");
#endif
  seconds.figures = seconds_since(phase);
  phase = Clock::now();
  export_model(*model, config, run / "model.pt");
  seconds.exporting = seconds_since(phase);
  const double total = seconds_since(start);
  nlohmann::json metrics = metrics_json(test_eval, class_names(config.dataset));
  metrics["epochs_completed"] = fit.history.epochs();
  if (!fit.stopped_early.empty()) metrics["stopped_early"] = fit.stopped_early;
  metrics["seconds"] = seconds.to_json(total);
  write_file_atomic(run / "metrics.json", metrics.dump(2) + "\n");

  std::cout << std::fixed << std::setprecision(4);
  if (fit.history.epochs() > 0)
    std::cout << "final training accuracy (Keras running mean): " << fit.history.accuracy.back() << "\n";
  std::cout << "test accuracy: " << test_eval.accuracy << "  test loss: " << test_eval.loss << "\n" << std::setprecision(2)
            << "time: " << total << " s (loading " << seconds.loading << ", training " << seconds.training << ", evaluation "
            << seconds.evaluation << ", checkpoints " << seconds.checkpoints << ", figures " << seconds.figures << ", export "
            << seconds.exporting << ")\nrun saved in " << run.string() << "\n";
  if (fit.diverged) {  // a failed run: its one line on stderr too, as every failure's
    std::cerr << "mnist: training stopped: " << fit.stopped_early << "; run saved in " << run.string() << "\n";
    return 1;
  }
  return 0;
}

int evaluate_cmd(const std::string& model_path, const std::string& data_flag, const std::string& split, bool json,
                 const std::string& out) {
  LoadedModel loaded = load_model(model_path);
  const std::string data_dir = data_flag.empty() ? default_data_dir(loaded.config) : data_flag;
  const Split data = load_split(data_dir, split == "train");
  check_dataset(data, split == "train", loaded.config.dataset, data_dir);
  const Evaluation e = evaluate(loaded.model, data, loaded.config.training);
  const nlohmann::json m = metrics_json(e, class_names(loaded.config.dataset), split);
  if (!out.empty()) {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) throw std::runtime_error("--out " + out + ": cannot create the directory (" + ec.message() + ")");
    write_file_atomic(fs::path(out) / (split == "test" ? "metrics.json" : "metrics_train.json"), m.dump(2) + "\n");
#ifdef MNIST_WITH_OPENCV
    if (split == "test") save_confusion_figures(out, e, class_names(loaded.config.dataset));
#else
    if (split == "test") figures_skipped("confusion-matrix figures");
#endif
  }
  if (json)
    std::cout << m.dump(2) << "\n";
  else
    print_evaluation(std::cout, m, split);
  return 0;
}

#ifdef MNIST_WITH_OPENCV
// Redraws every figure of a run directory from its files (the gallery needs the test images), in
// place or, with `out`, into another directory (created if missing), leaving the run untouched.
int plot_cmd(const std::string& run_dir, const std::string& data_flag, const std::string& out) {
  const fs::path dir(run_dir);
  if (!fs::is_directory(dir) || !fs::exists(dir / "history.json"))
    throw std::runtime_error(run_dir + " is not a run directory (no history.json)");
  const History history = History::from_json(read_json_file(dir / "history.json", /*max_depth=*/16), (dir / "history.json").string());
  LoadedModel loaded = load_model(run_dir);
  const std::string data_dir = data_flag.empty() ? default_data_dir(loaded.config) : data_flag;
  const Split test = load_split(data_dir, false);
  check_dataset(test, false, loaded.config.dataset, data_dir);
  const Evaluation e = evaluate(loaded.model, test, loaded.config.training);
  const MistakeSample mistakes = most_confident_mistakes(loaded.model, test, kGallerySize);
  const fs::path target = out.empty() ? dir : fs::path(out);
  if (out.empty()) save_history(dir, history);  // history.csv follows history.json
  save_run_figures(target, loaded.config.name, history, e, class_names(loaded.config.dataset), &mistakes);
  std::cout << "figures written to " << target.string() << ": confusion_matrix.png, confusion_matrix_normalized.png, accuracy.png, loss.png, misclassified.png\n";
  return 0;
}
#endif

// Prints the table; draws the overlay only where --out names a file, so nothing is written unasked.
int compare_cmd(const std::vector<std::string>& inputs, const std::string& out) {
  std::vector<RunRecord> runs;
  for (const auto& in : inputs) runs.push_back(load_run_record(in));
  std::cout << comparison_table(runs);
  if (out.empty()) return 0;
#ifdef MNIST_WITH_OPENCV
  save_png(out, comparison_chart(runs));
  std::cout << "accuracy overlay written to " << out << "\n";
#else
  figures_skipped("accuracy overlay " + out);
#endif
  return 0;
}

int export_cmd(const std::string& run_dir, const std::string& out_flag) {
  LoadedModel loaded = load_model(run_dir);
  const fs::path out = out_flag.empty() ? fs::path(run_dir) / "model.pt" : fs::path(out_flag);
  if (out.extension() == ".json") {  // Keras's get_weights() list, for model.set_weights()
    write_file_atomic(out, keras_weights_json(*loaded.model).dump() + "\n");
    std::cout << "Keras weights (model.get_weights() order) written to " << out.string() << "\n";
    return 0;
  }
  if (is_keras_weights_h5_file(out)) {  // for model.load_weights()
    write_file_atomic(out, keras_weights_h5(*loaded.model, loaded.config.name));
    std::cout << "Keras weights file written to " << out.string() << " (model.load_weights)\n";
    return 0;
  }
  if (is_keras_model_file(out)) {  // for keras.saving.load_model()
    write_file_atomic(out, keras_model_archive(*loaded.model, loaded.config));
    std::cout << "Keras model written to " << out.string() << " (keras.saving.load_model)\n";
    return 0;
  }
  const fs::path weights = export_model(*loaded.model, loaded.config, out);
  std::cout << "TorchScript model written to " << out.string() << ", state_dict to " << weights.string() << "\n";
  return 0;
}

// `mnist import-keras`: FILE.keras brings its own model config; FILE.json and FILE.weights.h5
// take the layers from --config.
int import_keras_cmd(const std::string& file, const ConfigFlags& flags, bool config_given, const std::string& out,
                     const std::string& config_out) {
  Config config;
  Params params;
  if (is_keras_model_file(file)) {
    if (config_given)
      throw UsageError("--config does not apply to " + file + ": a .keras file carries its own model config (--set still applies)");
    KerasModel keras = read_keras_model(file);
    for (const auto& note : keras.notes) std::cout << "note: " << note << "\n";
    config = flags.sets.empty() ? keras.config : apply_overrides(keras.config, flags.sets);
    params = std::move(keras.params);
  } else {
    config = resolve_config(flags);
    params = read_keras_weights(file, config);
  }
  Model model = model_with_params(config, params, "Keras weights file " + file);
  if (!config_out.empty()) write_file_atomic(config_out, to_json(config).dump(2) + "\n");
  const fs::path weights = export_model(*model, config, out);
  std::cout << "imported " << file << " into " << out << " (state_dict: " << weights.string() << ")"
            << (config_out.empty() ? "" : "; its config into " + config_out) << "\n";
  return 0;
}

#ifdef MNIST_WITH_OPENCV
// What a model's outputs are, said honestly: only a softmax head gives probabilities (they sum to
// 1); a sigmoid head's ten outputs each lie in [0, 1] on their own, and several can be 1.000.
std::string outputs_are(Activation head) {
  switch (head) {
    case Activation::softmax: return "softmax probabilities";
    case Activation::linear: return "logits";
    default: return to_string(head) + " outputs";
  }
}

int predict_cmd(const std::string& model_path, const std::vector<std::string>& inputs, int64_t top, bool json) {
  LoadedModel loaded = load_model(model_path);
  const auto classes = class_names(loaded.config.dataset);
  const auto files = collect_images(inputs);
  std::vector<torch::Tensor> digits;
  for (const auto& f : files) digits.push_back(load_digit(f));
  torch::Tensor outputs;
  {
    torch::NoGradGuard no_grad;
    loaded.model->eval();
    outputs = loaded.model->forward(torch::stack(digits));
  }
  const int64_t k = std::min<int64_t>(top, outputs.size(1));
  const auto [scores, labels] = outputs.topk(k, 1);
  nlohmann::json predictions = nlohmann::json::array();
  for (size_t i = 0; i < files.size(); ++i) {
    nlohmann::json ranked = nlohmann::json::array();
    for (int64_t r = 0; r < k; ++r) {
      const int64_t label = labels[static_cast<int64_t>(i)][r].item<int64_t>();
      ranked.push_back({{"label", label}, {"class", classes[static_cast<size_t>(label)]},
                        {"output", scores[static_cast<int64_t>(i)][r].item<double>()}});
    }
    predictions.push_back({{"image", files[i].string()}, {"predicted", ranked[0]["label"]}, {"class", ranked[0]["class"]}, {"top", ranked}});
  }
  const Activation head = loaded.model->output_activation();
  if (json) {
    std::cout << nlohmann::json{{"model", model_path}, {"output_activation", to_string(head)}, {"outputs_are", outputs_are(head)},
                                {"predictions", predictions}}.dump(2)
              << "\n";
    return 0;
  }
  for (const auto& p : predictions) {
    std::cout << p["image"].get<std::string>() << ": " << p["class"].get<std::string>() << "  (" << outputs_are(head) << ": ";
    for (size_t r = 0; r < p["top"].size(); ++r)
      std::cout << (r ? ", " : "") << p["top"][r]["class"].get<std::string>() << " " << std::fixed << std::setprecision(3)
                << p["top"][r]["output"].get<double>();
    std::cout << ")\n";
  }
  return 0;
}
#endif

int bench_cmd(const ConfigFlags& flags, const std::string& device_flag, const std::string& data_flag, int64_t warmup,
              int64_t epochs, int64_t batch_size, bool json) {
  Config config = resolve_config(flags);
  if (batch_size > 0) config = apply_overrides(config, {"training.batch_size=" + std::to_string(batch_size)});
  const torch::Device device = resolve_device(device_flag);
  const std::string data_dir = data_flag.empty() ? default_data_dir(config) : data_flag;
  const Split train = load_split(data_dir, true).to(device);
  // On CUDA the first epoch runs eagerly and the second captures the graph (graph.h): neither is
  // what the later epochs cost.
  if (warmup < 0) warmup = device.is_cuda() ? 2 : 1;
  const BenchResult r = run_bench(config, train, device, warmup, epochs);
  if (json) {
    std::cout << r.to_json().dump(2) << "\n";
    return 0;
  }
  std::cout << std::fixed << std::setprecision(3) << config.name << " on " << r.device << ", batch " << r.batch_size << ", "
            << torch::get_num_threads() << " threads, " << r.step << " step: " << r.seconds_per_epoch << " s/epoch (median of " << r.epoch_seconds.size()
            << " after " << warmup << " warm-up), " << std::setprecision(0) << r.steps_per_second << " steps/s, "
            << r.samples_per_second << " samples/s, peak RSS " << r.peak_rss_mb << " MB";
  if (r.peak_gpu_mb >= 0) std::cout << ", peak GPU memory " << r.peak_gpu_mb << " MB";
  std::cout << "\n";
  return 0;
}

int baselines_cmd(const std::string& data_dir, BaselineOptions options, bool json) {
  const Split train = load_split(data_dir, true), test = load_split(data_dir, false);
  if (!json)
    std::cout << "Classical baselines on " << data_dir << " (" << train.size() << " training, " << test.size()
              << " test images, pixels / 255)"
              << (options.samples > 0 ? "; every method trains on the first " + std::to_string(options.samples) : "")
              << (options.svm_samples > 0 ? "; the SVM trains on the first " + std::to_string(options.svm_samples) : "") << "\n";
  const auto results = run_baselines(train, test, options, json ? nullptr : &std::cout);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : results) out.push_back(r.to_json());
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"mnist: the Keras MNIST paper (Flatten -> Dense(100, relu) -> Dense(10, sigmoid), adam) on LibTorch"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");

  ConfigFlags train_flags;
  TrainFlags train_only;
  std::string device = "auto", data, out;
  int threads = 0;
  auto* train_cmd = app.add_subcommand("train", "train a config; writes a run directory");
  add_config_flags(*train_cmd, train_flags, true);
  train_cmd->add_option("--resume", train_only.resume, "continue an interrupted run from RUN_DIR/checkpoint.pt");
  train_cmd->add_option("--device", train_only.device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  train_cmd->add_option("--data", train_only.data, "directory with the four IDX files (default: data/<dataset>)");
  train_cmd->add_option("--out", train_only.out, "run directory (default: runs/<name>-<timestamp>); must not exist or be empty");
  train_cmd->add_option("--initial-weights", train_only.initial_weights,
                        "start from these Keras weights: FILE.json (model.get_weights() list), FILE.weights.h5 or FILE.keras");
  train_cmd->add_option("--data-order", train_only.data_order,
                        "train on these samples in this order instead of shuffling: a JSON list per epoch of indices into the training split");
  train_cmd->add_option("--threads", threads, "CPU threads for LibTorch (0: LibTorch's default)")->check(whole_number(0, max_threads()));

  std::string model_path;
  bool json = false;
  std::string split = "test";
  auto* eval_cmd = app.add_subcommand("evaluate", "evaluate a model on the test (or training) set");
  eval_cmd->add_option("--split", split, "test, or train for all 60000 training images (keys become train_*)")
      ->check(CLI::IsMember({"test", "train"}))->capture_default_str();
  eval_cmd->add_option("--model", model_path, "model.pt, checkpoint.pt or a run directory")->required();
  eval_cmd->add_option("--data", data, "directory with the four IDX files (default: data/<dataset>)");
  eval_cmd->add_flag("--json", json, "print metrics.json's keys as JSON");
  std::string eval_out;
  eval_cmd->add_option("--out", eval_out, "also write metrics.json and the confusion-matrix heatmaps into this directory");

  std::string plot_dir, plot_out;
  auto* plot_cmd_app = app.add_subcommand("plot", "redraw every figure of a run directory");
  plot_cmd_app->add_option("run", plot_dir, "run directory")->required();
  plot_cmd_app->add_option("--data", data, "directory with the four IDX files (default: data/<dataset>)");
  plot_cmd_app->add_option("--out", plot_out, "write the figures into this directory (created if missing) instead of the run's");

  std::vector<std::string> compare_inputs;
  std::string compare_out;
  auto* compare_cmd_app = app.add_subcommand("compare", "tabulate and overlay runs and Keras History JSON files");
  compare_cmd_app->add_option("inputs", compare_inputs, "run directories and/or Keras History JSON files")->required()->expected(1, -1);
  compare_cmd_app->add_option("--out", compare_out, "also draw the overlaid accuracy curves into this PNG file");

  ConfigFlags summary_flags;
  auto* summary_cmd = app.add_subcommand("summary", "print a config's model summary and resolved config");
  add_config_flags(*summary_cmd, summary_flags, true);

  std::string export_run, export_out;
  auto* export_app = app.add_subcommand("export", "write a run's TorchScript model.pt (+ model_weights.pt state_dict)");
  export_app->add_option("--run", export_run, "run directory (or a checkpoint.pt)")->required();
  export_app->add_option("--out", export_out,
                         "output file (default: RUN_DIR/model.pt, TorchScript); FILE.keras, FILE.weights.h5 or FILE.json "
                         "(the get_weights() list): Keras's formats instead");

  std::string keras_weights, import_out, import_config_out;
  ConfigFlags import_flags;
  auto* import_app = app.add_subcommand("import-keras", "turn a Keras model or its weights into a TorchScript model");
  import_app->add_option("file", keras_weights,
                         "FILE.keras (model.save: config and weights), FILE.weights.h5 (model.save_weights) or FILE.json "
                         "(model.get_weights() list); the last two take the layers from --config")->required();
  add_config_flags(*import_app, import_flags, false);
  import_app->add_option("--out", import_out, "TorchScript model to write")->required();
  import_app->add_option("--config-out", import_config_out, "also write the model's config (ours, resolved) to this JSON file");

  std::vector<std::string> predict_inputs;
  int64_t top = 3;
  auto* predict_app = app.add_subcommand("predict", "classify digit images (PNG/JPEG/BMP files or directories)");
  predict_app->add_option("--model", model_path, "model.pt, checkpoint.pt or a run directory")->required();
  predict_app->add_option("images", predict_inputs, "image files and/or directories")->required()->expected(1, -1);
  predict_app->add_option("--top", top, "how many classes to list per image")->check(CLI::Range(1, 1000))->capture_default_str();
  predict_app->add_flag("--json", json, "one JSON document");

  ConfigFlags bench_flags;
  int64_t bench_epochs = 5, bench_warmup = -1, bench_batch = 0;
  auto* bench_app = app.add_subcommand("bench", "seconds per training epoch (median after warm-up), steps/s, peak memory");
  add_config_flags(*bench_app, bench_flags, false);
  bench_app->add_option("--device", device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  bench_app->add_option("--epochs", bench_epochs, "timed epochs")->check(whole_number(1, 10000))->capture_default_str();
  bench_app->add_option("--warmup", bench_warmup, "untimed epochs first (default: 1 on the CPU, 2 on CUDA)")->check(whole_number(0, 10000));
  bench_app->add_option("--batch-size", bench_batch, "override training.batch_size")->check(whole_number(1, 60000));
  bench_app->add_option("--data", data, "directory with the four IDX files (default: data/<dataset>)");
  bench_app->add_option("--threads", threads, "CPU threads for LibTorch (0: LibTorch's default)")->check(whole_number(0, max_threads()));
  bench_app->add_flag("--json", json, "one JSON document (key seconds_per_epoch)");

  BaselineOptions baseline_options;
  std::string baseline_data = "data/mnist";
  auto* baselines_app = app.add_subcommand("baselines", "k-NN, logistic regression, RBF SVM and random forest on the same pixels");
  baselines_app->add_option("--data", baseline_data, "directory with the four IDX files (data/fashion-mnist for Fashion-MNIST)")
      ->capture_default_str();
  baselines_app->add_option("--method", baseline_options.methods, "run only these (repeatable): knn, logistic, svm, forest")
      ->check(CLI::IsMember(kBaselineMethods));
  baselines_app->add_option("--samples", baseline_options.samples, "train every method on the first N images only (0: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{60000}))->capture_default_str();
  baselines_app->add_option("--svm-samples", baseline_options.svm_samples,
                             "train the SVM on the first N images only (0: all; its fit time grows with N squared)")
      ->check(CLI::Range(int64_t{0}, int64_t{60000}))->capture_default_str();
  baselines_app->add_option("--threads", threads, "CPU threads for LibTorch and OpenCV (0: their defaults)")->check(whole_number(0, max_threads()));
  baselines_app->add_flag("--json", json, "a JSON list of {method, accuracy, fit_seconds, predict_seconds, train_samples}");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    throw UsageError(std::string(e.what()) + " (see mnist " + (app.get_subcommands().empty() ? "" : app.get_subcommands()[0]->get_name() + " ") + "--help)");
  }
  if (threads > 0) {
    torch::set_num_threads(threads);
#ifdef MNIST_WITH_OPENCV
    cv::setNumThreads(threads);
#endif
  }

  if (*train_cmd) {
    const bool config_flags_given = train_cmd->count("--config") + train_cmd->count("--set") + train_cmd->count("--epochs") +
                                    train_cmd->count("--seed") > 0;
    return train(train_flags, config_flags_given, train_only);
  }
  if (*eval_cmd) return evaluate_cmd(model_path, data, split, json, eval_out);
#ifdef MNIST_WITH_OPENCV
  if (*plot_cmd_app) return plot_cmd(plot_dir, data, plot_out);
  if (*predict_app) return predict_cmd(model_path, predict_inputs, top, json);
#else
  if (*plot_cmd_app) needs_opencv("plot");
  if (*predict_app) needs_opencv("predict");
#endif
  if (*compare_cmd_app) return compare_cmd(compare_inputs, compare_out);
  if (*export_app) return export_cmd(export_run, export_out);
  if (*bench_app) return bench_cmd(bench_flags, device, data, bench_warmup, bench_epochs, bench_batch, json);
  if (*import_app) return import_keras_cmd(keras_weights, import_flags, import_app->count("--config") > 0, import_out, import_config_out);
  if (*baselines_app) return baselines_cmd(baseline_data, baseline_options, json);
  const Config c = resolve_config(summary_flags);
  Model model(c.model, kImageShape, c.training.seed);
  std::cout << model->summary(c.name) << to_json(c).dump(2) << "\n";
  return 0;
}

}  // namespace mnist
