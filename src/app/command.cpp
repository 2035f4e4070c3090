// command: the flags and checks the subcommands share.
#include "app/command.h"

#include <algorithm>
#include <iostream>
#include <thread>

#include "config/errors.h"
#ifdef MNIST_WITH_OPENCV
#include <opencv2/core/utility.hpp>
#endif

namespace mnist {

void add_config_flags(CLI::App& cmd, ConfigFlags& f, bool training_shorthands) {
  cmd.add_option("--config", f.config, "JSON config file")->capture_default_str();
  cmd.add_option("--set", f.sets, "override one config value, e.g. training.optimizer.learning_rate=0.01 (repeatable)");
  if (training_shorthands) {
    cmd.add_option("--epochs", f.epochs, "shorthand for --set training.epochs=N")->check(whole_number(1, 1000000));
    cmd.add_option("--seed", f.seed, "shorthand for --set training.seed=N")->check(whole_number(0, std::numeric_limits<int64_t>::max()));
  }
}

bool config_flags_given(const CLI::App& cmd) {
  size_t given = 0;
  for (const char* flag : {"--config", "--set", "--epochs", "--seed"})
    if (cmd.get_option_no_throw(flag) != nullptr) given += cmd.count(flag);
  return given > 0;
}

Config resolve_config(const ConfigFlags& f) {
  std::vector<std::string> sets = f.sets;
  if (f.epochs > 0) sets.push_back("training.epochs=" + std::to_string(f.epochs));
  if (f.seed >= 0) sets.push_back("training.seed=" + std::to_string(f.seed));
  return load_config_file(f.config, sets);
}

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

void add_threads_option(CLI::App& cmd, int& threads, const std::string& what) {
  // More threads than this only add switching: four per core of this machine.
  const int64_t max_threads = 4 * std::max<int64_t>(1, std::thread::hardware_concurrency());
  cmd.add_option("--threads", threads, "CPU threads for " + what + " (0: " + (what == "LibTorch" ? "LibTorch's default" : "their defaults") + ")")
      ->check(whole_number(0, max_threads));
}

void start_threads() {
  at::parallel_for(0, at::get_num_threads(), /*grain_size=*/1, [](int64_t, int64_t) {});
}

void apply_threads(int threads) {
  if (threads <= 0) return;
  torch::set_num_threads(threads);
#ifdef MNIST_WITH_OPENCV
  cv::setNumThreads(threads);
#endif
  start_threads();
}

void add_device_option(CLI::App& cmd, std::string& device) {
  cmd.add_option("--device", device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
}

torch::Device resolve_device(const std::string& flag) {
  const bool cuda = torch::cuda::is_available();
  if (flag == "cuda" && !cuda)
    throw UsageError("--device cuda: no CUDA device is available to this LibTorch build; use --device cpu (or auto)");
  return (flag == "cuda" || (flag == "auto" && cuda)) ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

void add_data_option(CLI::App& cmd, std::string& data) {
  cmd.add_option("--data", data, "directory with the four IDX files (default: data/<dataset>)");
}

std::string data_dir_of(const std::string& data_flag, const Config& config) {
  return data_flag.empty() ? std::string("data/") + name_of(config.dataset) : data_flag;
}

Split load_checked_split(const std::string& data_dir, bool train, const Config& config) {
  Split split = load_split(data_dir, train);
  check_dataset(split, train, config.dataset, data_dir);
  return split;
}

void figures_skipped(const std::string& what) {
  std::cout << what << " not drawn: this build has no OpenCV (cmake -DMNIST_WITH_OPENCV=OFF)\n";
}

void needs_opencv(const std::string& command) {
  throw UsageError(command + " needs OpenCV, and this build has none (cmake -DMNIST_WITH_OPENCV=OFF): rebuild it with OpenCV's headers installed");
}

}  // namespace mnist
