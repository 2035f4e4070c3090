// Each of fit()'s callbacks (callbacks.h, and the run directory's RunCheckpoint) on its own: called
// as fit() calls them, on a tiny model, with no training. The trainer tests run them inside fit().
#include <gtest/gtest.h>

#include <sstream>

#include "helpers.h"
#include "interop/checkpoint.h"
#include "interop/rundir.h"
#include "train/callbacks.h"
#include "train/train.h"

using namespace mnist;
using testing_helpers::TempDir;

namespace {

Config tiny(const std::string& training = "") {
  return parse_config_text(R"({"name": "tiny", "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10,
                               "activation": "softmax"}]}, "training": {"epochs": 3)" + training + "}}",
                           "tiny.json");
}

// What fit() hands its callbacks, for a tiny model and its optimizer.
struct Fixture {
  explicit Fixture(const Config& c)
      : config(c), model(config.model, kImageShape, 0), optimizer(model->parameters(), config.training.optimizer) {}
  Config config;
  Model model;
  KerasOptimizer optimizer;
  History history;
  std::map<std::string, torch::Tensor> best;
  FitState state{model, optimizer, config.training, history, best, /*steps_per_epoch=*/10};
};

EpochLogs logs_with(double val_accuracy) {
  EpochLogs logs;
  logs.loss = 0.5, logs.accuracy = 0.8, logs.val_loss = 0.4, logs.val_accuracy = val_accuracy;
  logs.test_loss = 0.45, logs.test_accuracy = 0.85, logs.seconds = 1.5, logs.learning_rate = 0.001;
  return logs;
}

}  // namespace

TEST(Callbacks, HistoryRecorderAppendsAnEpochsLogs) {
  Fixture f(tiny());
  HistoryRecorder recorder;
  recorder.on_epoch_end(0, logs_with(0.9), f.state);
  recorder.on_epoch_end(1, logs_with(0.95), f.state);
  ASSERT_EQ(f.history.epochs(), 2u);
  EXPECT_EQ(f.history.val_accuracy, (std::vector<double>{0.9, 0.95}));
  EXPECT_EQ(f.history.test_loss, (std::vector<double>{0.45, 0.45}));
  EXPECT_EQ(f.history.epoch_seconds, (std::vector<double>{1.5, 1.5}));
  EXPECT_EQ(f.history.learning_rate, (std::vector<double>{0.001, 0.001}));
}

TEST(Callbacks, TerminateOnNaNRestoresTheEpochsStartAndStopsAsAFailure) {
  Fixture f(tiny());
  TerminateOnNaN nan_stop;
  const torch::Tensor start = f.optimizer.flat_params().clone();
  nan_stop.on_epoch_begin(0, f.state);
  {
    torch::NoGradGuard no_grad;
    f.optimizer.flat_params().add_(1.0);  // the epoch's steps
  }
  nan_stop.on_epoch_trained(0, 0.25, f.state);  // finite: nothing happens
  EXPECT_FALSE(f.state.stop_training);
  EXPECT_FALSE(torch::equal(f.optimizer.flat_params(), start));
  nan_stop.on_epoch_trained(0, std::nan(""), f.state);
  EXPECT_TRUE(f.state.stop_training);
  EXPECT_TRUE(f.state.diverged);
  EXPECT_TRUE(torch::equal(f.optimizer.flat_params(), start));
  EXPECT_NE(f.state.stopped_because.find("became non-finite (nan) in epoch 1; kept the weights this epoch started from (the initial weights)"),
            std::string::npos)
      << f.state.stopped_because;
}

TEST(Callbacks, EarlyStoppingStopsAfterPatienceAndRestoresTheBestWeights) {
  Fixture f(tiny(R"(, "validation_split": 0.1, "early_stopping": {"monitor": "val_accuracy", "patience": 1, "restore_best_weights": true})"));
  HistoryRecorder recorder;
  EarlyStopping early;
  auto epoch_end = [&](int64_t epoch, double val_accuracy) {
    recorder.on_epoch_end(epoch, logs_with(val_accuracy), f.state);
    early.on_epoch_end(epoch, logs_with(val_accuracy), f.state);
  };
  epoch_end(0, 0.90);
  const torch::Tensor best = f.optimizer.flat_params().clone();
  ASSERT_FALSE(f.best.empty());  // the best epoch's weights are kept
  {
    torch::NoGradGuard no_grad;
    f.optimizer.flat_params().add_(1.0);
  }
  epoch_end(1, 0.85);  // no improvement for 1 epoch: patience 1 is spent
  EXPECT_TRUE(f.state.stop_training);
  EXPECT_FALSE(f.state.diverged);  // a normal end
  EXPECT_TRUE(torch::equal(f.optimizer.flat_params(), best));
  EXPECT_EQ(f.state.stopped_because,
            "early stopping: val_accuracy has not improved for 1 epochs (best: epoch 1); restored that epoch's weights");
}

TEST(Callbacks, ReduceLROnPlateauSetsTheRateTheHistoryCallsFor) {
  Fixture f(tiny(R"(, "optimizer": {"name": "adam", "learning_rate": 0.1}, "reduce_lr_on_plateau": {"monitor": "loss", "patience": 1, "factor": 0.5})"));
  ReduceLROnPlateau plateau;
  f.history.loss = {0.8, 0.9};  // the second epoch did not improve
  plateau.on_epoch_begin(2, f.state);
  EXPECT_DOUBLE_EQ(f.optimizer.learning_rate(), 0.05);
  f.history.loss = {0.8, 0.7};
  plateau.on_epoch_begin(2, f.state);
  EXPECT_DOUBLE_EQ(f.optimizer.learning_rate(), 0.1);
}

TEST(Callbacks, ProgressLoggerWritesKerasLinesAndWhyARunStopped) {
  Fixture f(tiny());
  std::ostringstream out;
  ProgressLogger logger(out, /*live_bar=*/false);
  logger.on_epoch_begin(1, f.state);
  logger.on_batch_end(3, [] { return EpochLogs{}; }, f.state);  // no bar off a terminal
  logger.on_epoch_end(1, logs_with(0.9), f.state);
  EXPECT_EQ(out.str(), "Epoch 2/3  10/10 [==============================] 2s 150ms/step - accuracy: 0.8000 - loss: 0.5000 - "
                       "val_accuracy: 0.9000 - val_loss: 0.4000\n");
  out.str("");
  f.state.stop_training = f.state.diverged = true;
  f.state.stopped_because = "the training loss became non-finite";
  logger.on_epoch_trained(2, std::nan(""), f.state);
  EXPECT_EQ(out.str(), "Stopped: the training loss became non-finite\n");
}

TEST(Callbacks, RunCheckpointKeepsTheCheckpointAndHistoryFiles) {
  TempDir tmp;
  Fixture f(tiny());
  Trainer trainer(f.model, f.config.training, torch::kCPU);
  RunCheckpoint checkpoint(tmp.path, *f.model, f.config, trainer, "data-checksum");
  f.history.loss = {0.5}, f.history.accuracy = {0.8}, f.history.val_loss = {0.4}, f.history.val_accuracy = {0.9};
  trainer.resume(f.history, Progress{});
  checkpoint.on_epoch_end(0, logs_with(0.9), f.state);
  const Checkpoint saved = read_checkpoint(tmp / "checkpoint.pt");
  EXPECT_EQ(saved.history.epochs(), 1u);
  EXPECT_EQ(saved.data_checksum, "data-checksum");
  EXPECT_TRUE(fs::exists(tmp / "history.json"));
  EXPECT_EQ(testing_helpers::slurp(tmp / "history.csv"), "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.80000000000000004,0.5,0.90000000000000002,0.40000000000000002\n");
  EXPECT_GT(checkpoint.seconds, 0);
}

TEST(Callbacks, StandardCallbacksAreThoseTheConfigAsksFor) {
  EXPECT_EQ(standard_callbacks(tiny().training, nullptr, false).size(), 2u);  // TerminateOnNaN, HistoryRecorder
  std::ostringstream log;
  EXPECT_EQ(standard_callbacks(tiny().training, &log, false).size(), 3u);  // and the logger
  const Config both = tiny(R"(, "early_stopping": {"monitor": "loss"}, "reduce_lr_on_plateau": {"monitor": "loss"})");
  EXPECT_EQ(standard_callbacks(both.training, &log, false).size(), 5u);
}
