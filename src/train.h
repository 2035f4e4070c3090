// train: Keras's Model.fit() loop. Batches come from the resident dataset by permutation +
// index_select on the training device; the training metrics are Keras's running means over the
// epoch's batches (what its progress bar and History report: the paper's 99.96% is such a number),
// accumulated on the device and read once per epoch; after every epoch the validation data (the
// validation_split, or else the test set) and the test set are evaluated.
#pragma once
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "model.h"
#include "optim.h"

namespace mnist {

// Keras History keys, one value per epoch. val_* is the validation_split when there is one, else
// the test set (Keras's validation_data=(x_test, y_test)); test_* is always the test set.
struct History {
  std::vector<double> loss, accuracy, val_loss, val_accuracy, test_loss, test_accuracy, epoch_seconds;
  size_t epochs() const { return loss.size(); }
  nlohmann::json to_json() const;
  // Keras CSVLogger format: "epoch,accuracy,loss,val_accuracy,val_loss", epochs counted from 0.
  std::string to_csv() const;
  // Reads our history.json or a Keras History dict saved with json.dump (model.fit(...).history;
  // old Keras's "acc"/"val_acc" are accepted). Missing keys stay empty. Throws std::runtime_error
  // naming `origin` and the key when a value is not a list of numbers.
  static History from_json(const nlohmann::json& j, const std::string& origin);
};

struct FitOptions {
  std::ostream* log = nullptr;  // per-epoch lines; nullptr for silence
  bool progress_bar = false;    // live bar (stdout is a terminal)
  std::function<void(const History&)> on_epoch_end;
};

struct FitResult {
  History history;
  std::string stopped_early;  // empty when every epoch ran; else why training stopped
};

// The permutation of [0, n) used for `epoch`: a pure function of (seed, epoch), drawn on the CPU,
// so every device sees the same data order and a resumed run needs no saved RNG state.
torch::Tensor epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

class Trainer {
 public:
  Trainer(Model model, TrainingConfig config, torch::Device device);

  // `validation` may be empty: val_* then reports `test`. All splits must be on the device.
  FitResult fit(const Split& train, const Split& validation, const Split& test, const FitOptions& options);

  KerasOptimizer& optimizer() { return optimizer_; }

 private:
  // Runs one epoch; returns {sum of batch loss * batch size, correct predictions} as device scalars.
  std::pair<torch::Tensor, torch::Tensor> train_epoch(const Split& train, int64_t epoch, const FitOptions& options);

  Model model_;
  TrainingConfig config_;
  torch::Device device_;
  KerasOptimizer optimizer_;
};

}  // namespace mnist
