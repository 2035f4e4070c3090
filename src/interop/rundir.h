// rundir: what a run leaves on disk. A run directory (runs/<config-name>-<timestamp>/) holds
// config.json (resolved config), history.json (Keras History keys), metrics.json and
// checkpoint.pt. Every file is written under a temporary name and renamed into place, so a reader
// never sees a half-written file.
#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "config/config.h"
#include "model/model.h"
#include "step/optim.h"
#include "train/train.h"

namespace mnist {

namespace fs = std::filesystem;

void write_file_atomic(const fs::path& path, const std::string& content);
// Removes the temporaries (".NAME.tmp-PID") that a process killed while writing left in `dir`.
void remove_temporaries(const fs::path& dir);

// `out` empty: runs/<name>-<YYYYmmdd-HHMMSS>[-N] under `runs_root`, never an existing directory;
// `runs_root`/latest then links to it.
// `out` given: created if missing; refused (UsageError) if it exists and is not empty.
// Throws UsageError for an --out that create_run_dir would refuse; call it before slow work.
void check_out_dir(const std::string& out);
fs::path create_run_dir(const std::string& out, const std::string& name, const fs::path& runs_root = "runs");

// history.json and history.csv (Keras CSVLogger format), both atomically.
void save_history(const fs::path& dir, const History& history);

// A self-contained checkpoint: the resolved config, the model's tensors by name, and the
// trainer's optimizer state, history, position and early-stopping best weights, so `mnist
// evaluate --model checkpoint.pt` needs nothing else and `train --resume` continues exactly.
// `data_checksum`: Split::checksum of the training data, which a resumed run must train on again.
void save_checkpoint(const fs::path& path, ModelImpl& model, const Config& config, Trainer& trainer, const std::string& data_checksum = "");

struct Checkpoint {
  Config config;
  std::map<std::string, torch::Tensor> params;  // by ModelImpl::state() name
  std::map<std::string, torch::Tensor> best_state;  // Trainer::best_state()
  std::vector<torch::Tensor> optimizer_state;   // KerasOptimizer::state()
  History history;
  Progress progress;
  torch::Tensor data_order;  // Trainer::data_order(): undefined unless the run took a given order
  std::string checksum;      // ModelImpl::state_checksum() of the saved model (empty in older checkpoints)
  std::string data_checksum; // Split::checksum of the training data (empty in older checkpoints)
};
// Reads a checkpoint written by save_checkpoint. Throws std::runtime_error naming the file.
Checkpoint read_checkpoint(const fs::path& path);

}  // namespace mnist
