// The subcommands' own logic, without spawning the binary: what `train --resume RUN` decides from
// RUN's files (command_train.h plan_resume).
#include <gtest/gtest.h>

#include "app/command_train.h"
#include "helpers.h"
#include "train/train.h"

using namespace mnist;
using testing_helpers::TempDir;
using testing_helpers::write_file;

namespace {

Config tiny_config(const std::string& extra_training = "") {
  return parse_config_text(R"({"name": "tiny", "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]},
                               "training": {"epochs": 3)" + extra_training + "}}",
                           "tiny.json");
}

// RUN/checkpoint.pt after `epochs` finished epochs (and `steps` steps of the next).
void write_checkpoint(const fs::path& run, const Config& config, const History& history, int64_t steps = 0) {
  Model model(config.model, kImageShape, config.training.seed);
  Trainer trainer(model, config.training, torch::kCPU);
  trainer.resume(history, Progress{steps, 0, 0, 0});
  fs::create_directories(run);
  save_checkpoint(run / "checkpoint.pt", *model, config, trainer);
}

History epochs_of_loss(std::vector<double> loss) {
  History h;
  for (double v : loss) {
    h.loss.push_back(v), h.accuracy.push_back(0.5), h.val_loss.push_back(1), h.val_accuracy.push_back(0.5);
    h.test_loss.push_back(1), h.test_accuracy.push_back(0.5), h.epoch_seconds.push_back(0.1), h.learning_rate.push_back(0.001);
  }
  return h;
}

}  // namespace

TEST(Commands, ResumeRefusesAFolderThatIsNoRun) {
  TempDir tmp;
  try {
    plan_resume(tmp.path.string());
    FAIL() << "planned a resume of an empty folder";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a run directory: it holds neither checkpoint.pt nor config.json"), std::string::npos) << e.what();
  }
}

TEST(Commands, ResumeWithoutACheckpointTrainsTheRunAgainFromItsConfig) {
  TempDir tmp;
  write_file(tmp / "config.json", to_json(tiny_config()).dump());
  const ResumePlan plan = plan_resume(tmp.path.string());
  EXPECT_EQ(plan.action, ResumePlan::Action::restart);
  EXPECT_FALSE(plan.checkpoint.has_value());
  EXPECT_EQ(plan.config.name, "tiny");
  EXPECT_NE(plan.message.find("holds no checkpoint"), std::string::npos) << plan.message;
}

TEST(Commands, ResumeContinuesARunMidEpochAndAfterAnEpoch) {
  TempDir tmp;
  const Config config = tiny_config();
  write_checkpoint(tmp / "mid", config, epochs_of_loss({1.0}), /*steps=*/5);
  write_checkpoint(tmp / "boundary", config, epochs_of_loss({1.0, 0.9}));
  write_checkpoint(tmp / "last-epoch-begun", config, epochs_of_loss({1.0, 0.9, 0.8}), /*steps=*/0);
  for (const char* run : {"mid", "boundary"}) {
    const ResumePlan plan = plan_resume((tmp / run).string());
    EXPECT_EQ(plan.action, ResumePlan::Action::resume) << run;
    ASSERT_TRUE(plan.checkpoint.has_value()) << run;
    EXPECT_TRUE(plan.message.empty()) << plan.message;
  }
  EXPECT_EQ(plan_resume((tmp / "mid").string()).checkpoint->progress.step, 5);
  // Three of three epochs at a boundary, but no results yet (stopped before they were written):
  // resumed, to write them.
  const ResumePlan unwritten = plan_resume((tmp / "last-epoch-begun").string());
  EXPECT_EQ(unwritten.action, ResumePlan::Action::resume);
  EXPECT_NE(unwritten.message.find("trained all 3 epochs but stopped before its results were written"), std::string::npos)
      << unwritten.message;
  // With its results: nothing left.
  for (const char* result : {"metrics.json", "model.pt"}) write_file(tmp / "last-epoch-begun" / result, "{}");
  const ResumePlan done = plan_resume((tmp / "last-epoch-begun").string());
  EXPECT_EQ(done.action, ResumePlan::Action::finished);
  EXPECT_NE(done.message.find("already finished all 3 epochs; nothing to resume"), std::string::npos) << done.message;
}

TEST(Commands, ResumeKnowsARunThatEarlyStoppingEnded) {
  TempDir tmp;
  const Config config = tiny_config(R"(, "early_stopping": {"monitor": "loss", "patience": 1})");
  write_checkpoint(tmp / "stopped", config, epochs_of_loss({1.0, 1.5}));  // no improvement for 1 epoch
  write_checkpoint(tmp / "improving", config, epochs_of_loss({1.0, 0.5}));
  const ResumePlan stopped = plan_resume((tmp / "stopped").string());
  EXPECT_EQ(stopped.action, ResumePlan::Action::stopped_early);
  EXPECT_NE(stopped.message.find("was ended by early stopping after 2 epochs"), std::string::npos) << stopped.message;
  EXPECT_EQ(plan_resume((tmp / "improving").string()).action, ResumePlan::Action::resume);
}
