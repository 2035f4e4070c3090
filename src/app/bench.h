// bench: `mnist bench`, the speed of the training loop on resident data, measured the way
// scripts/bench.sh compares it with PyTorch eager: seconds per epoch is the median of the timed
// epochs after warm-up epochs (evaluation after each epoch is not timed).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config/config.h"
#include "data/data.h"

namespace mnist {

struct BenchResult {
  std::vector<double> epoch_seconds;  // the timed epochs
  double seconds_per_epoch = 0, steps_per_second = 0, samples_per_second = 0, peak_rss_mb = 0;
  double peak_gpu_mb = -1;  // CUDA only: the caching allocator's peak of allocated bytes; -1 elsewhere
  int64_t batch_size = 0, samples = 0;
  std::string device;
  std::string step;  // Trainer::step_kind(): fused, or autograd and why
  nlohmann::json to_json() const;
};

BenchResult run_bench(const Config& config, const Split& train, torch::Device device, int64_t warmup, int64_t epochs);

}  // namespace mnist
