// command: the `mnist` subcommands, one file each (command_<name>.cpp), and what they share. Each
// add_<name>_command registers its subcommand and options on the CLI11 app and returns the action
// that runs it once parsed; run_cli (cli.cpp) is the list of them. Errors go up to main() as
// exceptions (config/errors.h).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "config/config.h"
#include "data/data.h"

namespace mnist {

// A registered subcommand: its CLI11 app (set once parsed, if chosen) and its action.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // the process's exit status
};

// Every subcommand, in the order `mnist --help` lists them.
Command add_train_command(CLI::App& app);
Command add_evaluate_command(CLI::App& app);
Command add_plot_command(CLI::App& app);
Command add_compare_command(CLI::App& app);
Command add_summary_command(CLI::App& app);
Command add_export_command(CLI::App& app);
Command add_import_keras_command(CLI::App& app);
Command add_predict_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_baselines_command(CLI::App& app);

// --config, --set and (`training_shorthands`) --epochs and --seed: the config a command runs.
struct ConfigFlags {
  std::string config = "configs/paper.json";
  std::vector<std::string> sets;
  int64_t epochs = 0;  // 0: keep the config's
  int64_t seed = -1;   // -1: keep the config's
};
void add_config_flags(CLI::App& cmd, ConfigFlags& f, bool training_shorthands);
// Whether any of them was given on `cmd`'s command line.
bool config_flags_given(const CLI::App& cmd);
// The file's config with the --set (and --epochs, --seed) overrides applied.
Config resolve_config(const ConfigFlags& f);

// A whole number from lo to hi, said plainly when it is not ("--epochs: must be a whole number from 1 to 1000000 (got 0)").
CLI::Validator whole_number(int64_t lo, int64_t hi);
// --threads: CPU threads for LibTorch (and OpenCV); apply_threads sets them where it is above 0.
void add_threads_option(CLI::App& cmd, int& threads, const std::string& what);
void apply_threads(int threads);
// Starts LibTorch's OpenMP threads now (apply_threads does too): one that failed to start later,
// under a memory limit, would end the process inside libgomp with its own message.
void start_threads();
// --device auto|cpu|cuda; resolve_device refuses cuda where this LibTorch has no CUDA device.
void add_device_option(CLI::App& cmd, std::string& device);
torch::Device resolve_device(const std::string& flag);

// --data: a directory with the four IDX files, data/<dataset> by default.
void add_data_option(CLI::App& cmd, std::string& data);
std::string data_dir_of(const std::string& data_flag, const Config& config);
// The training or test split of `data_dir`, checked to be the config's dataset.
Split load_checked_split(const std::string& data_dir, bool train, const Config& config);

constexpr int64_t kGallerySize = 36;  // 6 x 6 most confident mistakes in misclassified.png

// A build without OpenCV (cmake -DMNIST_WITH_OPENCV=OFF, for machines without its headers) trains,
// evaluates, exports and benchmarks like any other; it skips the figures, saying so, and refuses
// the commands that only draw or read images.
void figures_skipped(const std::string& what);
[[noreturn]] void needs_opencv(const std::string& command);

}  // namespace mnist
