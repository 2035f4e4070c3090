// checkpoint: checkpoint.pt, a run's whole state between two steps, so `mnist evaluate --model
// checkpoint.pt` needs nothing else and `train --resume` continues exactly. A LibTorch archive of
// named entries, declared once in checkpoint_fields() (checkpoint.cpp), which both writes and
// reads them; the "format" entry names the schema's version:
//   1  the optimizer's slots as optimizer.0 .. optimizer.2 and its iterations as optimizer.3
//   2  the slots by name (optimizer.momentum, ...) and optimizer.iterations
// Version 2 is written; both are read (tests/data/checkpoint-v1 holds a version-1 run).
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include <torch/torch.h>

#include "config/config.h"
#include "model/model.h"
#include "step/optim.h"
#include "train/callbacks.h"
#include "train/history.h"

namespace mnist {

class Trainer;

struct Checkpoint {
  Config config;
  std::map<std::string, torch::Tensor> params;      // by ModelImpl::state() name
  std::map<std::string, torch::Tensor> best_state;  // Trainer::best_state(): early stopping's best weights
  OptimizerState optimizer;
  History history;
  Progress progress;
  torch::Tensor data_order;   // Trainer::data_order(): undefined unless the run took a given order
  std::string checksum;       // ModelImpl::state_checksum() of the saved model
  std::string data_checksum;  // Split::checksum of the training data (empty: not recorded)
};

// A snapshot of a training run: the model, its config and the trainer's state.
Checkpoint checkpoint_of(ModelImpl& model, const Config& config, const Trainer& trainer, const std::string& data_checksum = "");
// Writes it to `path` atomically.
void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint);
void save_checkpoint(const std::filesystem::path& path, ModelImpl& model, const Config& config, const Trainer& trainer,
                     const std::string& data_checksum = "");
// Reads a checkpoint of any version above. Throws std::runtime_error naming the file.
Checkpoint read_checkpoint(const std::filesystem::path& path);

// A training run's record, kept after every epoch: checkpoint.pt first (the record), then
// history.json and history.csv, which follow from it. The time it takes adds to `seconds`.
class RunCheckpoint : public Callback {
 public:
  RunCheckpoint(std::filesystem::path dir, ModelImpl& model, const Config& config, const Trainer& trainer, std::string data_checksum)
      : dir_(std::move(dir)), model_(model), config_(config), trainer_(trainer), data_checksum_(std::move(data_checksum)) {}
  void on_epoch_end(int64_t, const EpochLogs&, FitState& s) override { save(s.history); }
  // Also where fit() stopped between epochs' ends: interrupted, diverged, stopped early.
  void save(const History& history);
  double seconds = 0;

 private:
  std::filesystem::path dir_;
  ModelImpl& model_;
  const Config& config_;
  const Trainer& trainer_;
  std::string data_checksum_;
};

}  // namespace mnist
