// checkpoint.pt's schema (interop/checkpoint.h): the current version read back whole, and a
// version-1 checkpoint written by an earlier release resuming to the same bits as a run that went
// straight through.
#include <gtest/gtest.h>

#include "helpers.h"
#include "interop/checkpoint.h"
#include "interop/export.h"
#include "train/train.h"

using namespace mnist;
using testing_helpers::TempDir;
using testing_helpers::write_synthetic_mnist;

namespace {

const fs::path kVersion1 = "tests/data/checkpoint-v1/checkpoint.pt";  // run from the repository root

struct Data {
  Split train, test;
};
// The synthetic MNIST of tests/helpers.h, which tests/data/checkpoint-v1 was trained on.
Data synthetic_data(const TempDir& tmp) {
  write_synthetic_mnist(tmp.path);
  return {load_split(tmp.path.string(), true), load_split(tmp.path.string(), false)};
}

}  // namespace

TEST(Checkpoint, TheCurrentVersionKeepsEveryEntry) {
  TempDir tmp;
  const Config config = parse_config_text(R"({"name": "c", "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10,
      "activation": "softmax"}]}, "training": {"epochs": 2, "optimizer": {"name": "rmsprop", "momentum": 0.5}}})", "c.json");
  Model model(config.model, kImageShape, 1);
  Trainer trainer(model, config.training, torch::kCPU);
  OptimizerState state = trainer.optimizer().state();
  for (size_t k = 0; k < state.slots.size(); ++k) state.slots[k].second.fill_(static_cast<float>(k + 1));
  state.iterations = 7;
  trainer.optimizer().load_state(state);
  History h;
  h.loss = {0.5}, h.accuracy = {0.75}, h.val_loss = {0.25}, h.val_accuracy = {0.875};
  trainer.resume(h, Progress{3, 1.5, 2, 0.25});
  trainer.set_data_order(torch::arange(20, torch::kLong).view({2, 10}));
  save_checkpoint(tmp / "checkpoint.pt", *model, config, trainer, "abc");

  const Checkpoint c = read_checkpoint(tmp / "checkpoint.pt");
  EXPECT_EQ(c.config.training.optimizer.name, Optimizer::rmsprop);
  ASSERT_EQ(c.optimizer.slots.size(), 3u);
  EXPECT_EQ(c.optimizer.slots[2].first, "average_gradient");
  EXPECT_TRUE(c.optimizer.slot("momentum").eq(2).all().item<bool>());
  EXPECT_EQ(c.optimizer.iterations, 7);
  EXPECT_EQ(c.history.loss, h.loss);
  EXPECT_EQ(c.progress.step, 3);
  EXPECT_EQ(c.progress.loss_sum, 1.5);
  EXPECT_TRUE(c.data_order.equal(torch::arange(20, torch::kLong).view({2, 10})));
  EXPECT_EQ(c.data_checksum, "abc");
  EXPECT_EQ(c.checksum, model->state_checksum());
  for (const auto& [name, t] : model->state()) EXPECT_TRUE(c.params.at(name).equal(t)) << name;
}

TEST(Checkpoint, AVersionOneCheckpointReadsAsTheCurrentVersionDoes) {
  TempDir tmp;
  const Checkpoint v1 = read_checkpoint(kVersion1);
  EXPECT_EQ(v1.history.epochs(), 1u);
  EXPECT_EQ(v1.optimizer.iterations, 1875);  // one epoch of 60000 at batch 32
  ASSERT_EQ(v1.optimizer.slots.size(), 2u);  // adam: momentum, velocity (version 1: optimizer.0 and .1)
  EXPECT_GT(v1.optimizer.slot("velocity").abs().sum().item<float>(), 0);
  save_checkpoint(tmp / "v2.pt", v1);
  const Checkpoint v2 = read_checkpoint(tmp / "v2.pt");
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(v2.optimizer.slots[k].first, v1.optimizer.slots[k].first);
    EXPECT_TRUE(v2.optimizer.slots[k].second.equal(v1.optimizer.slots[k].second)) << v1.optimizer.slots[k].first;
  }
  EXPECT_EQ(v2.optimizer.iterations, v1.optimizer.iterations);
  for (const auto& [name, t] : v1.params) EXPECT_TRUE(v2.params.at(name).equal(t)) << name;
  EXPECT_EQ(v2.history.loss, v1.history.loss);
  EXPECT_EQ(v2.checksum, v1.checksum);
  EXPECT_EQ(v2.data_checksum, v1.data_checksum);
}

TEST(Checkpoint, AVersionOneCheckpointResumesToTheBitsOfAStraightRun) {
  TempDir tmp;
  const Data data = synthetic_data(tmp);
  const Checkpoint c = read_checkpoint(kVersion1);
  ASSERT_EQ(c.data_checksum, data.train.checksum);  // trained on these very images

  // The fixture's first epoch was trained by a Release build on LibTorch 2.13; a build that rounds
  // otherwise (the sanitizers' -O1, another LibTorch) cannot continue it to its own straight run's bits.
  TrainingConfig one_epoch = c.config.training;
  one_epoch.epochs = 1;
  Model first_model(c.config.model, kImageShape, c.config.training.seed);
  Trainer(first_model, one_epoch, torch::kCPU).fit(data.train, Split{}, data.test, FitOptions{});
  for (const auto& [name, t] : first_model->state())
    if (!t.equal(c.params.at(name)))
      GTEST_SKIP() << "this build trains the first epoch to other bits (" << name << ") than the Release build that wrote "
                   << kVersion1.string() << ": a bit-for-bit resume is compared on the Release build only";

  Model straight_model(c.config.model, kImageShape, c.config.training.seed);
  Trainer straight(straight_model, c.config.training, torch::kCPU);
  const History want = straight.fit(data.train, Split{}, data.test, FitOptions{}).history;

  Model resumed_model = model_with_params(c.config, c.params, kVersion1.string(), c.checksum);
  Trainer resumed(resumed_model, c.config.training, torch::kCPU);
  resumed.optimizer().load_state(c.optimizer);
  resumed.resume(c.history, c.progress, c.best_state);
  const History got = resumed.fit(data.train, Split{}, data.test, FitOptions{}).history;
  EXPECT_EQ(got.loss, want.loss);
  EXPECT_EQ(got.accuracy, want.accuracy);
  EXPECT_EQ(got.val_loss, want.val_loss);
  EXPECT_TRUE(resumed.optimizer().flat_params().equal(straight.optimizer().flat_params()));
  EXPECT_EQ(resumed.optimizer().iterations(), straight.optimizer().iterations());
}
