// bench: timed training epochs and the process's peak memory.
#include "app/bench.h"

#include <sys/resource.h>

#include <algorithm>

#ifdef MNIST_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "train/train.h"

namespace mnist {

nlohmann::json BenchResult::to_json() const {
  return {{"seconds_per_epoch", seconds_per_epoch}, {"steps_per_second", steps_per_second},
          {"samples_per_second", samples_per_second}, {"peak_rss_mb", peak_rss_mb},
          {"epoch_seconds", epoch_seconds},         {"batch_size", batch_size},
          {"samples", samples},                     {"device", device},
          {"step", step},                           {"peak_gpu_mb", peak_gpu_mb},
          {"threads", torch::get_num_threads()}};
}

BenchResult run_bench(const Config& config, const Split& train, torch::Device device, int64_t warmup, int64_t epochs) {
  TrainingConfig training = config.training;
  training.epochs = warmup + epochs;
  Model model(config.model, kImageShape, training.seed);
  Trainer trainer(model, training, device);
  // fit() evaluates after every epoch (untimed); a small slice keeps that cheap.
  const Split probe{train.images.narrow(0, 0, std::min<int64_t>(1000, train.size())),
                    train.labels.narrow(0, 0, std::min<int64_t>(1000, train.size())), /*checksum=*/""};
  const History h = trainer.fit(train, Split{}, probe, FitOptions{}).history;

  BenchResult r;
  r.epoch_seconds.assign(h.epoch_seconds.begin() + warmup, h.epoch_seconds.end());
  std::vector<double> sorted = r.epoch_seconds;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  r.seconds_per_epoch = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  r.batch_size = training.batch_size;
  r.samples = train.size();
  const double steps = static_cast<double>(trainer.steps_per_epoch(train));
  r.steps_per_second = steps / r.seconds_per_epoch;
  r.samples_per_second = static_cast<double>(train.size()) / r.seconds_per_epoch;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  r.peak_rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
  r.device = device.str();
#ifdef MNIST_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    r.peak_gpu_mb = static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);  // [0]: all pools
  }
#endif
  r.step = trainer.step_kind();
  return r;
}

}  // namespace mnist
