// history: what a run records per epoch (Keras's History) and where an interrupted epoch stands
// (Progress): plain records that the trainer fills, and the run directory, the figures and the
// comparisons read.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mnist {

// Keras History keys, one value per epoch. val_* is the validation_split when there is one, else
// the test set (Keras's validation_data=(x_test, y_test)); test_* is always the test set.
struct History {
  std::vector<double> loss, accuracy, val_loss, val_accuracy, test_loss, test_accuracy, epoch_seconds;
  std::vector<double> learning_rate;  // at the epoch's end, as Keras logs it when a callback changes it
  size_t epochs() const { return loss.size(); }
  nlohmann::json to_json() const;
  // Keras CSVLogger format: "epoch,accuracy,loss,val_accuracy,val_loss", epochs counted from 0.
  std::string to_csv() const;
  // Reads our history.json or a Keras History dict saved with json.dump (model.fit(...).history;
  // old Keras's "acc"/"val_acc" are accepted). Missing keys stay empty. Throws std::runtime_error
  // naming `origin` and the key when a value is not a list of numbers.
  static History from_json(const nlohmann::json& j, const std::string& origin);
};

// Every per-epoch list of a History, with its key.
inline constexpr std::pair<const char*, std::vector<double> History::*> kHistoryLists[] = {
    {"loss", &History::loss},         {"accuracy", &History::accuracy},           {"val_loss", &History::val_loss},
    {"val_accuracy", &History::val_accuracy}, {"test_loss", &History::test_loss}, {"test_accuracy", &History::test_accuracy},
    {"epoch_seconds", &History::epoch_seconds}, {"learning_rate", &History::learning_rate}};

// Where a run stands inside the epoch after the last completed one: the steps already taken and
// their running sums, so that a run interrupted mid-epoch resumes with exactly the same batches
// and Keras metrics as one that ran straight through.
struct Progress {
  int64_t step = 0;                  // 0: at an epoch boundary
  double loss_sum = 0, correct = 0;  // sum of batch loss * batch size (a float32 value), hits
  double seconds = 0;                // time already spent in this epoch
  nlohmann::json to_json() const;
  static Progress from_json(const nlohmann::json& j);
};

}  // namespace mnist
