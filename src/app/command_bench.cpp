// command_bench: `mnist bench`: seconds per training epoch (median after warm-up), steps and
// samples per second, peak memory (bench.h).
#include <iomanip>
#include <iostream>

#include "app/bench.h"
#include "app/command.h"

namespace mnist {
namespace {

struct BenchFlags {
  ConfigFlags config;
  std::string device = "auto", data;
  int64_t epochs = 5, warmup = -1, batch_size = 0;
  int threads = 0;
  bool json = false;
};

int run_bench_command(const BenchFlags& f) {
  apply_threads(f.threads);
  Config config = resolve_config(f.config);
  if (f.batch_size > 0) config = apply_overrides(config, {"training.batch_size=" + std::to_string(f.batch_size)});
  const torch::Device device = resolve_device(f.device);
  const Split train = load_split(data_dir_of(f.data, config), true).to(device);
  // On CUDA the first epoch runs eagerly and the second captures the graph (graph.h): neither is
  // what the later epochs cost.
  const int64_t warmup = f.warmup >= 0 ? f.warmup : device.is_cuda() ? 2 : 1;
  const BenchResult r = run_bench(config, train, device, warmup, f.epochs);
  if (f.json) {
    std::cout << r.to_json().dump(2) << "\n";
    return 0;
  }
  std::cout << std::fixed << std::setprecision(3) << config.name << " on " << r.device << ", batch " << r.batch_size << ", "
            << torch::get_num_threads() << " threads, " << r.step << " step: " << r.seconds_per_epoch << " s/epoch (median of "
            << r.epoch_seconds.size() << " after " << warmup << " warm-up), " << std::setprecision(0) << r.steps_per_second
            << " steps/s, " << r.samples_per_second << " samples/s, peak RSS " << r.peak_rss_mb << " MB";
  if (r.peak_gpu_mb >= 0) std::cout << ", peak GPU memory " << r.peak_gpu_mb << " MB";
  std::cout << "\n";
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "seconds per training epoch (median after warm-up), steps/s, peak memory");
  add_config_flags(*cmd, f->config, false);
  add_device_option(*cmd, f->device);
  cmd->add_option("--epochs", f->epochs, "timed epochs")->check(whole_number(1, 10000))->capture_default_str();
  cmd->add_option("--warmup", f->warmup, "untimed epochs first (default: 1 on the CPU, 2 on CUDA)")->check(whole_number(0, 10000));
  cmd->add_option("--batch-size", f->batch_size, "override training.batch_size")->check(whole_number(1, 60000));
  add_data_option(*cmd, f->data);
  add_threads_option(*cmd, f->threads, "LibTorch");
  cmd->add_flag("--json", f->json, "one JSON document (key seconds_per_epoch)");
  return {cmd, [f] { return run_bench_command(*f); }};
}

}  // namespace mnist
