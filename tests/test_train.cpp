// The fit loop on small synthetic data: it learns, it reports Keras's running metrics, it is
// deterministic for a seed, it resumes bit for bit, and a non-finite loss stops it with the last
// finite weights kept. The tests of the loop run on each step a Dense model trains on (TrainOn,
// below): the autograd step, the fused CPU step and the CUDA kernels' code run serially on the CPU.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "helpers.h"
#include "interop/export.h"
#include "interop/checkpoint.h"
#include "interop/rundir.h"
#include "model/loss.h"
#include "synthetic.h"
#include "train/metrics.h"
#include "train/train.h"

using namespace mnist;

// The training step a TrainOn test runs (outside the anonymous namespace: TrainOn's tests derive from
// a class of it).
enum class Step { autograd, fused, kernels };

using testing_helpers::TempDir;

namespace {

ModelConfig small_model(Activation out = Activation::sigmoid) {
  return ModelConfig{{{"flatten", FlattenSpec{}},
                      {"dense", DenseSpec{32, Activation::relu, true}},
                      {"dense_1", DenseSpec{10, out, true}}}};
}

TrainingConfig training(int64_t epochs, int64_t batch) {
  TrainingConfig t;
  t.epochs = epochs;
  t.batch_size = batch;
  t.seed = 5;
  return t;
}

std::string step_name(const testing::TestParamInfo<Step>& info) {
  return info.param == Step::autograd ? "autograd" : info.param == Step::fused ? "fused" : "kernels";
}

// A trainer on `step`, checked to be on it: the fused step covers these tests' models, so a test
// that meant the fused step and silently got autograd (or the reverse) fails here.
std::unique_ptr<Trainer> trainer_on(Step step, Model model, TrainingConfig t) {
  t.fused = step != Step::autograd;
  auto trainer = std::make_unique<Trainer>(std::move(model), t, torch::kCPU);
  if (step == Step::kernels) trainer->run_kernels_on_cpu();
  const std::string want = step == Step::autograd ? "autograd (training.fused is false)"
                           : step == Step::fused  ? "fused"
                                                  : "fused (kernels, serially on the CPU)";
  EXPECT_EQ(trainer->step_kind(), want);
  return trainer;
}

}  // namespace

class TrainOn : public testing::TestWithParam<Step> {};
INSTANTIATE_TEST_SUITE_P(Step, TrainOn, testing::Values(Step::autograd, Step::fused, Step::kernels), step_name);

TEST_P(TrainOn, LearnsASeparableProblemAndFillsTheHistory) {
  const Split train = class_blocks(600, 1, 0.3, 1.0), test = class_blocks(200, 2, 0.3, 1.0);
  Model model(small_model(), kImageShape, 0);
  const auto trainer = trainer_on(GetParam(), model, training(3, 32));
  std::ostringstream log;
  FitOptions options;
  options.log = &log;
  int callbacks = 0;
  options.on_epoch_end = [&](const History& h) { EXPECT_EQ(h.epochs(), static_cast<size_t>(++callbacks)); };
  const FitResult r = trainer->fit(train, Split{}, test, options);
  EXPECT_TRUE(r.stopped_early.empty());
  EXPECT_EQ(callbacks, 3);
  const History& h = r.history;
  ASSERT_EQ(h.epochs(), 3u);
  EXPECT_GT(h.test_accuracy.back(), 0.95);
  EXPECT_LT(h.loss.back(), h.loss.front());
  EXPECT_EQ(h.val_accuracy, h.test_accuracy);  // no validation_split: val_* is the test set
  for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"})
    EXPECT_EQ(h.to_json()[key].size(), 3u) << key;
  EXPECT_NE(log.str().find("Epoch 3/3  19/19 [==============================]"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find(" - accuracy: "), std::string::npos);
  EXPECT_NE(log.str().find(" - val_loss: "), std::string::npos);
}

TEST_P(TrainOn, ReportedAccuracyIsKerasRunningMeanOverTheEpochsBatches) {
  // With one batch per epoch, Keras's epoch metrics are those of the forward pass BEFORE the
  // update, i.e. of the initial weights, not an evaluation after the epoch.
  const Split train = class_blocks(64, 3, 0.3, 1.0);
  Model model(small_model(), kImageShape, 0);
  const Evaluation before = evaluate(model, train, TrainingConfig{});
  const History h = trainer_on(GetParam(), model, training(1, 64))->fit(train, Split{}, train, FitOptions{}).history;
  EXPECT_NEAR(h.accuracy[0], before.accuracy, 1e-12);
  EXPECT_NEAR(h.loss[0], before.loss, 1e-5);
  EXPECT_NE(h.test_loss[0], before.loss);  // the weights did change
}

TEST_P(TrainOn, SameSeedGivesIdenticalRuns) {
  const Split train = class_blocks(300, 4, 0.3, 1.0), test = class_blocks(100, 5, 0.3, 1.0);
  auto run = [&] {
    Model model(small_model(), kImageShape, 11);
    const auto trainer = trainer_on(GetParam(), model, training(2, 32));
    const History h = trainer->fit(train, Split{}, test, FitOptions{}).history;
    return std::make_pair(h.loss, trainer->optimizer().flat_params().clone());
  };
  const auto a = run(), b = run();
  EXPECT_EQ(a.first, b.first);
  EXPECT_TRUE(a.second.equal(b.second));
}

// Runs `config` straight through, and again interrupted at an epoch boundary and then mid-epoch
// and resumed through a real checkpoint file, as `mnist train --resume` does; both must agree bit
// for bit.
static void expect_resume_is_bit_exact(const Config& config, Step step) {
  const Split train = class_blocks(300, 15, 0.3, 1.0), test = class_blocks(100, 16, 0.3, 1.0);
  Model straight_model(config.model, kImageShape, 9);
  const auto straight_trainer = trainer_on(step, straight_model, config.training);
  Trainer& straight = *straight_trainer;
  const History expected = straight.fit(train, Split{}, test, FitOptions{}).history;

  // Ask to stop at the end of epoch 1: the trainer stops after the first step of epoch 2.
  Model model(config.model, kImageShape, 9);
  const auto first_trainer = trainer_on(step, model, config.training);
  Trainer& first = *first_trainer;
  std::atomic<bool> stop{false};
  FitOptions options;
  options.stop = &stop;
  int epochs_seen = 0;
  options.on_epoch_end = [&](const History&) { stop = ++epochs_seen == 1; };
  FitResult partial = first.fit(train, Split{}, test, options);
  ASSERT_TRUE(partial.interrupted);
  ASSERT_EQ(partial.history.epochs(), 1u);
  EXPECT_EQ(first.progress().step, 0);  // stopped at the epoch boundary
  options.on_epoch_end = nullptr;
  // Second leg: interrupt inside epoch 2, using a thread-free trick: set the flag now, so the very
  // next step (step 1 of epoch 2) is the last one taken.
  stop = true;
  partial = first.fit(train, Split{}, test, options);
  ASSERT_TRUE(partial.interrupted);
  EXPECT_EQ(first.progress().step, 1);
  EXPECT_GT(first.progress().correct, 0);

  TempDir tmp;
  save_checkpoint(tmp / "checkpoint.pt", *model, config, first);
  const Checkpoint c = read_checkpoint(tmp / "checkpoint.pt");
  EXPECT_EQ(c.progress.step, 1);
  Model resumed_model = model_with_params(c.config, c.params, "checkpoint");
  const auto resumed_trainer = trainer_on(step, resumed_model, c.config.training);
  Trainer& resumed = *resumed_trainer;
  resumed.optimizer().load_state(c.optimizer);
  resumed.resume(c.history, c.progress, c.best_state);
  const History got = resumed.fit(train, Split{}, test, FitOptions{}).history;

  EXPECT_TRUE(resumed.optimizer().flat_params().equal(straight.optimizer().flat_params()));
  const auto a = resumed_model->state(), b = straight_model->state();  // BatchNormalization statistics too
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
  EXPECT_EQ(resumed.optimizer().iterations(), straight.optimizer().iterations());
  EXPECT_EQ(got.loss, expected.loss);
  EXPECT_EQ(got.accuracy, expected.accuracy);
  EXPECT_EQ(got.val_loss, expected.val_loss);
  EXPECT_EQ(got.test_accuracy, expected.test_accuracy);
  EXPECT_EQ(got.learning_rate, expected.learning_rate);
}

TEST_P(TrainOn, InterruptedMidEpochAndResumedEqualsStraightThroughBitForBit) {
  Config config;
  config.name = "resume";
  config.model = small_model();
  config.training = training(3, 32);
  expect_resume_is_bit_exact(config, GetParam());
}

// Dropout masks and augmentation are drawn from (seed, epoch, step): resuming needs no RNG state.
// A Conv2D model: the autograd step's.
TEST(Train, ResumeIsBitExactWithDropoutAugmentationBatchNormAndASchedule) {
  const Config config = parse_config_text(R"({
    "model": {"layers": [
      {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
      {"type": "BatchNormalization"}, {"type": "Activation", "activation": "relu"},
      {"type": "MaxPooling2D"}, {"type": "Flatten"}, {"type": "Dropout", "rate": 0.3},
      {"type": "Dense", "units": 10, "activation": "softmax"}]},
    "training": {"epochs": 3, "batch_size": 32, "seed": 5,
      "lr_schedule": {"name": "cosine_decay", "warmup_steps": 5, "warmup_target": 0.003},
      "augmentation": {"rotation_range": 10, "width_shift_range": 2, "zoom_range": 0.1, "elastic_alpha": 2}}})",
                                          "test");
  expect_resume_is_bit_exact(config, Step::autograd);
}

TEST(Train, RepeatedTrainAndEvaluateDoNotLeak) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "SKIPPED under AddressSanitizer: its quarantine keeps freed memory resident, so resident size says "
                  "nothing here; LeakSanitizer checks this build for leaks instead";
#endif
  // Each cycle builds a 784-512-10 model (~1.6 MB of weights, ~8 MB with optimizer state and
  // gradients), trains it on the autograd step and again on the fused step (its own buffers, ~8
  // MB more), and evaluates it. A leak of any of that would add ~8 MB per cycle.
  auto resident_mb = [] {
    std::ifstream statm("/proc/self/statm");
    long pages = 0, resident = 0;
    statm >> pages >> resident;
    return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
  };
  const Split train = class_blocks(256, 17, 0.3, 1.0), test = class_blocks(64, 18, 0.3, 1.0);
  ModelConfig wide = small_model();
  std::get<DenseSpec>(wide.layers[1].params).units = 512;
  auto cycle = [&] {
    for (const Step step : {Step::autograd, Step::fused}) {
      Model model(wide, kImageShape, 1);
      trainer_on(step, model, training(1, 64))->fit(train, Split{}, test, FitOptions{});
      evaluate(model, test, TrainingConfig{});
    }
  };
  for (int i = 0; i < 3; ++i) cycle();  // warm-up: allocator pools, thread pools
  const double before = resident_mb();
  for (int i = 0; i < 25; ++i) cycle();
  EXPECT_LT(resident_mb() - before, 40.0) << "resident memory grew across 25 train/evaluate cycles";
}

TEST(Train, EpochPermutationDependsOnSeedAndEpochOnly) {
  const auto p = epoch_permutation(1000, 3, 7);
  EXPECT_TRUE(p.equal(epoch_permutation(1000, 3, 7)));
  EXPECT_FALSE(p.equal(epoch_permutation(1000, 3, 8)));
  EXPECT_FALSE(p.equal(epoch_permutation(1000, 4, 7)));
  EXPECT_TRUE(std::get<0>(p.sort()).equal(torch::arange(1000, torch::kLong)));
}

TEST(Train, NonFiniteLossStopsAndKeepsTheLastFiniteWeights) {
  // Renormalized semantics with every sigmoid output underflowed to 0: the first batch's loss is
  // NaN. Only the autograd step implements that loss, so only it can meet this.
  const Split train = class_blocks(64, 6, 0.3, 1.0);
  Model model(small_model(), kImageShape, 0);
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["dense_1.bias"].fill_(-1000.0);
  }
  TrainingConfig cfg = training(3, 16);
  cfg.loss.semantics = LossSemantics::renormalized;
  Trainer trainer(model, cfg, torch::kCPU);
  ASSERT_EQ(trainer.step_kind().rfind("autograd", 0), 0u) << trainer.step_kind();
  const auto before = trainer.optimizer().flat_params().clone();
  std::ostringstream log;
  FitOptions options;
  options.log = &log;
  const FitResult r = trainer.fit(train, Split{}, train, options);
  EXPECT_EQ(r.history.epochs(), 0u);
  EXPECT_NE(r.stopped_early.find("non-finite"), std::string::npos) << r.stopped_early;
  EXPECT_NE(r.stopped_early.find("renormalized"), std::string::npos) << r.stopped_early;
  EXPECT_TRUE(trainer.optimizer().flat_params().equal(before));
  EXPECT_EQ(trainer.optimizer().iterations(), 0);
  EXPECT_NE(log.str().find("Stopped: "), std::string::npos);
}

TEST_P(TrainOn, ValidationSplitFeedsValMetricsAndTestIsStillReported) {
  const Split train = class_blocks(300, 7, 0.3, 1.0), validation = class_blocks(60, 8, 0.3, 1.0), test = class_blocks(100, 9, 0.3, 1.0);
  Model model(small_model(Activation::softmax), kImageShape, 0);
  const History h = trainer_on(GetParam(), model, training(1, 32))->fit(train, validation, test, FitOptions{}).history;
  EXPECT_NEAR(h.val_accuracy[0], evaluate(model, validation, TrainingConfig{}).accuracy, 1e-12);
  EXPECT_NEAR(h.test_accuracy[0], evaluate(model, test, TrainingConfig{}).accuracy, 1e-12);
}

TEST_P(TrainOn, SigmoidAndSoftmaxHeadsTrainIdenticalWeightsUnderTensorflowSemantics) {
  // Keras/TF computes the loss on the cached logits for both heads, so the gradients are the same:
  // the paper's sigmoid model IS the softmax model; only its outputs and reported accuracy differ.
  // On the autograd step the loss reads the output layer (loss.cpp), so this fails there if the
  // loss takes the sigmoid's outputs; the fused steps take the logits by construction (and the
  // output activation only for the accuracy).
  const Split train = class_blocks(200, 12, 0.3, 1.0), test = class_blocks(50, 13, 0.3, 1.0);
  auto final_params = [&](Activation out) {
    Model model(small_model(out), kImageShape, 21);
    const auto trainer = trainer_on(GetParam(), model, training(2, 32));
    trainer->fit(train, Split{}, test, FitOptions{});
    return trainer->optimizer().flat_params().clone();
  };
  EXPECT_TRUE(final_params(Activation::sigmoid).equal(final_params(Activation::softmax)));
}

TEST(Metrics, SaturatedSigmoidTiesResolveToTheLowestClassAsInKeras) {
  // Output bias +100: every sigmoid is exactly 1.0f, so argmax is class 0 for every sample.
  const Split data = class_blocks(50, 14, 0.3, 1.0);  // labels 0..9, five of each
  Model model(small_model(), kImageShape, 0);
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["dense_1.bias"].fill_(100.0);
  }
  const Evaluation e = evaluate(model, data, TrainingConfig{});
  EXPECT_EQ(e.top_output_ties, 50);
  EXPECT_DOUBLE_EQ(e.accuracy, 0.1);
  EXPECT_EQ(e.confusion.select(1, 0).sum().item<int64_t>(), 50);
}

// The mistake gallery counts mistakes by the run's accuracy rule, as the confusion matrix does. A model
// trained on a separable problem, then with every output bias raised by 100: every sigmoid is exactly
// 1.0f, so the outputs' argmax says class 0 for all, while the logits' (accuracy_argmax "logits")
// still follow what it learned.
TEST(Metrics, TheMistakeGalleryCountsByTheRunsAccuracyRule) {
  const Split data = class_blocks(600, 1, 0.3, 1.0);
  Model model(small_model(), kImageShape, 0);
  trainer_on(Step::autograd, model, training(3, 32))->fit(data, Split{}, data, FitOptions{});
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["dense_1.bias"].add_(100.0);
  }
  std::map<AccuracyArgmax, int64_t> counted;
  for (const auto rule : {AccuracyArgmax::outputs, AccuracyArgmax::logits}) {
    TrainingConfig t;
    t.accuracy_argmax = rule;
    const Evaluation e = evaluate(model, data, t);
    const MistakeSample gallery = most_confident_mistakes(model, data, t, /*limit=*/36);
    EXPECT_EQ(gallery.total_mistakes, data.size() - e.confusion.diag().sum().item<int64_t>()) << name_of(rule);
    for (const Mistake& m : gallery.mistakes) EXPECT_NE(m.truth, m.predicted) << name_of(rule);
    counted[rule] = gallery.total_mistakes;
  }
  EXPECT_EQ(counted[AccuracyArgmax::outputs], 540);  // all but class 0's 60
  EXPECT_LT(counted[AccuracyArgmax::logits], 30);
}

TEST(Metrics, ConfusionMatrixAndPerClassReport) {
  const auto truth = torch::tensor({0L, 0L, 1L, 1L, 2L}), predicted = torch::tensor({0L, 1L, 1L, 1L, 0L});
  Evaluation e;
  e.confusion = confusion_matrix(predicted, truth, 3);
  EXPECT_TRUE(e.confusion.equal(torch::tensor({1L, 1L, 0L, 0L, 2L, 0L, 1L, 0L, 0L}).view({3, 3})));
  const auto j = metrics_json(e, {"a", "b", "c"});
  EXPECT_EQ(j["confusion_matrix"][0][1], 1);
  EXPECT_DOUBLE_EQ(j["per_class"][0]["precision"].get<double>(), 0.5);  // 1 of 2 predicted a
  EXPECT_DOUBLE_EQ(j["per_class"][1]["recall"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["per_class"][1]["precision"].get<double>(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(j["per_class"][1]["f1"].get<double>(), 0.8);
  EXPECT_DOUBLE_EQ(j["per_class"][2]["f1"].get<double>(), 0.0);  // never predicted: 0, not NaN
  EXPECT_EQ(j["per_class"][2]["support"], 1);
}

TEST(Train, EarlyStoppingAndReduceLROnPlateauReplayKerasCallbacks) {
  History h;
  h.val_loss = {1.0, 0.8, 0.9, 0.95, 0.79};
  EarlyStoppingConfig es;
  es.enabled = true;
  es.patience = 1;
  EarlyStoppingState s = early_stopping_state(h, es);  // epoch 3 (0.9) is the first without progress
  EXPECT_TRUE(s.stop);
  EXPECT_EQ(s.best_epoch, 1);
  es.patience = 3;
  s = early_stopping_state(h, es);
  EXPECT_FALSE(s.stop);
  EXPECT_EQ(s.best_epoch, 4);
  es.min_delta = 0.05;  // 0.79 is not 0.05 better than 0.8
  es.patience = 2;
  s = early_stopping_state(h, es);
  EXPECT_TRUE(s.stop);
  EXPECT_EQ(s.best_epoch, 1);
  es.start_from_epoch = 2;  // epochs before it are not watched: 0.79 beats 0.9 by more than 0.05
  s = early_stopping_state(h, es);
  EXPECT_FALSE(s.stop);
  EXPECT_EQ(s.best_epoch, 4);

  ReduceLROnPlateauConfig p;
  p.enabled = true;
  p.patience = 2;
  p.factor = 0.5;
  EXPECT_DOUBLE_EQ(plateau_learning_rate(h, p, 0.1), 0.05);  // 0.9 and 0.95 do not improve on 0.8
  p.cooldown = 5;
  p.patience = 1;
  EXPECT_DOUBLE_EQ(plateau_learning_rate(h, p, 0.1), 0.05);  // reduced once, then cooling down
  p.monitor = Monitor::val_accuracy;
  h.val_accuracy = {0.5, 0.6, 0.7, 0.8, 0.9};
  EXPECT_DOUBLE_EQ(plateau_learning_rate(h, p, 0.1), 0.1);  // accuracies are maximised
}

TEST_P(TrainOn, EarlyStoppingRestoresTheBestEpochsWeights) {
  const Split train = class_blocks(300, 1, 0.3, 1.0), test = class_blocks(100, 2, 0.3, 1.0);
  Config config;
  config.name = "es";
  config.model = small_model(Activation::softmax);
  config.training = training(10, 32);
  config.training.early_stopping.enabled = true;
  config.training.early_stopping.monitor = Monitor::loss;
  config.training.early_stopping.min_delta = 100;  // nothing after the first epoch counts as progress
  config.training.early_stopping.patience = 2;
  config.training.early_stopping.restore_best_weights = true;

  Model one_epoch_model(config.model, kImageShape, 3);
  TrainingConfig one = config.training;
  one.epochs = 1;
  const auto one_epoch = trainer_on(GetParam(), one_epoch_model, one);
  one_epoch->fit(train, Split{}, test, FitOptions{});

  Model model(config.model, kImageShape, 3);
  const auto trainer = trainer_on(GetParam(), model, config.training);
  const FitResult r = trainer->fit(train, Split{}, test, FitOptions{});
  EXPECT_EQ(r.history.epochs(), 3u);
  EXPECT_FALSE(r.diverged);
  EXPECT_NE(r.stopped_early.find("early stopping: loss has not improved for 2 epochs (best: epoch 1)"), std::string::npos)
      << r.stopped_early;
  EXPECT_TRUE(trainer->optimizer().flat_params().equal(one_epoch->optimizer().flat_params()));
}
