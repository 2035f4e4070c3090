// The fused CPU step (src/fused.h) against the autograd step it replaces: same seed, same data
// order, the parameters and metrics after training agree within float rounding, for every model
// shape and training option the fused step claims to cover; and everything else is refused with
// a reason.
#include <gtest/gtest.h>

#include <filesystem>

#include "config/config.h"
#include "fused/forward.h"
#include "fused/fused.h"
#include "synthetic.h"
#include "train/train.h"

using namespace mnist;

namespace {

// n images of 10 classes, mostly exact zeros like MNIST (the fused first layer skips them): class
// k lights a 4x4 block at a class-specific place, plus a sparse sprinkle of noise.
Split sparse_synthetic(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  torch::Tensor noise = torch::rand({n, 1, 28, 28}, gen);
  Split s{torch::where(noise > 0.85, noise, torch::zeros_like(noise)), torch::arange(n, torch::kLong) % 10};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = s.labels[i].item<int64_t>();
    s.images[i].narrow(1, 2 + (k % 5) * 5, 4).narrow(2, 4 + (k / 5) * 12, 4).fill_(0.9);
  }
  return s;
}

Config config_with(const std::string& layers, const std::string& training) {
  return parse_config_text(R"({"model": {"layers": [)" + layers + R"(]}, "training": {"epochs": 2, "batch_size": 16, "seed": 3)" +
                               (training.empty() ? "" : ", " + training) + "}}",
                           "test");
}

struct Trained {
  History history;
  torch::Tensor params, m, v;
  std::string step;
};

// Trains through Trainer::fit on the fused step (`kernels`: its CUDA kernels' code, serially on the
// CPU) or on the autograd step.
Trained train(const Config& config, bool fused, bool kernels = false, const Split& data = sparse_synthetic(200, 1),
              const Split& test = sparse_synthetic(50, 2)) {  // 200 = 12 batches of 16 + one of 8
  TrainingConfig t = config.training;
  t.fused = fused;
  Model model(config.model, kImageShape, 7);
  Trainer trainer(model, t, torch::kCPU);
  if (kernels) trainer.run_kernels_on_cpu();
  Trained r;
  r.step = trainer.step_kind();
  r.history = trainer.fit(data, Split{}, test, FitOptions{}).history;
  // Through the model's own parameters: what checkpoints, evaluation and export read.
  std::vector<torch::Tensor> flat;
  for (const auto& p : model->parameters()) flat.push_back(p.detach().reshape(-1));
  r.params = torch::cat(flat);
  const auto state = trainer.optimizer().state();
  r.m = state.slots[0].second;  // the rule's first and second slots (sgd has one: the second stays 0)
  r.v = state.slots.size() > 1 ? state.slots[1].second : torch::zeros_like(r.m);
  return r;
}

struct Case {
  const char* name;
  std::string layers, training;
};

// Every model shape and training option the fused step claims to cover.
std::vector<Case> covered_cases() {
  const std::string flatten = R"({"type": "Flatten"}, )";
  return {
      {"paper (sigmoid head, tensorflow loss)", flatten + R"({"type": "Dense", "units": 24, "activation": "relu"},
                                                          {"type": "Dense", "units": 10, "activation": "sigmoid"})", ""},
      {"softmax head, label smoothing, adamw, cosine schedule",
       flatten + R"({"type": "Dense", "units": 24, "activation": "relu"}, {"type": "Dense", "units": 10, "activation": "softmax"})",
       R"("loss": {"label_smoothing": 0.1}, "optimizer": {"name": "adamw", "weight_decay": 0.01},
          "lr_schedule": {"name": "cosine_decay", "warmup_steps": 4, "warmup_target": 0.003})"},
      // 150 and 52 units: a row wider than fused.cpp's widest register tile (128 floats with
      // AVX-512, 64 else), then a tile of whole vectors and one that ends inside its last vector
      {"two hidden layers: tanh, sigmoid, no bias", flatten + R"({"type": "Dense", "units": 150, "activation": "tanh"},
          {"type": "Dense", "units": 52, "activation": "sigmoid", "use_bias": false},
          {"type": "Dense", "units": 10, "activation": "softmax"})", ""},
      // 12 units: a narrow layer (one vector of outputs, fused.cpp narrow_tile) inside the stack,
      // without a bias, read dense by the layer above
      {"narrow hidden layer", flatten + R"({"type": "Dense", "units": 40, "activation": "relu"},
          {"type": "Dense", "units": 12, "activation": "tanh", "use_bias": false},
          {"type": "Dense", "units": 10, "activation": "softmax"})", ""},
      {"linear head, from_logits", flatten + R"({"type": "Dense", "units": 16, "activation": "relu", "use_bias": false},
          {"type": "Dense", "units": 10})", R"("loss": {"from_logits": true})"},
      {"single Dense layer (logistic regression)", flatten + R"({"type": "Dense", "units": 10, "activation": "softmax"})", ""},
      {"sgd with nesterov momentum", flatten + R"({"type": "Dense", "units": 24, "activation": "relu"},
          {"type": "Dense", "units": 10, "activation": "sigmoid"})", R"("optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": true})"},
      {"rmsprop, centered, with momentum", flatten + R"({"type": "Dense", "units": 24, "activation": "tanh"},
          {"type": "Dense", "units": 10, "activation": "softmax"})",
       R"("optimizer": {"name": "rmsprop", "centered": true, "momentum": 0.5})"},
  };
}

}  // namespace

TEST(Fused, TrainsWhatTheAutogradStepTrains) {
  const std::vector<Case> cases = covered_cases();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Config config = config_with(c.layers, c.training);
    const Trained fused = train(config, true), reference = train(config, false);
    ASSERT_EQ(fused.step, "fused");
    ASSERT_EQ(reference.step, "autograd (training.fused is false)");
    ASSERT_EQ(fused.params.numel(), reference.params.numel());
    // 26 Adam steps: the two steps sum the same products in different orders, so they agree to
    // float rounding, not bit for bit: measured at most 5e-7 of the largest value, for parameters
    // and both Adam slots. A wrong or missing gradient term is off by 1e-3 or more.
    EXPECT_LT(relative_error(fused.params, reference.params), 5e-6);
    EXPECT_LT(relative_error(fused.m, reference.m), 5e-6);
    EXPECT_LT(relative_error(fused.v, reference.v), 5e-6);
    ASSERT_EQ(fused.history.epochs(), 2u);
    for (size_t e = 0; e < 2; ++e) {
      EXPECT_NEAR(fused.history.loss[e], reference.history.loss[e], 1e-5 * reference.history.loss[e]);
      EXPECT_NEAR(fused.history.accuracy[e], reference.history.accuracy[e], 1.0 / 200);  // at most one near-tie flips
      EXPECT_NEAR(fused.history.test_loss[e], reference.history.test_loss[e], 1e-4 * reference.history.test_loss[e]);
    }
  }
}

// The fused step splits its layers' inputs in bands, one thread's work each, and its other loops
// row by row; each band and row is summed as one thread sums it, so the weights, Adam's slots and
// the metrics are the same bits whatever the thread count. The first model is wide enough (784 and
// 256 inputs, 80 units) that every split happens; the second is the paper's shape, whose step
// groups the first layer's inputs on one thread while another runs the layers above. Both at
// batch 32 and at batch 600, which the step works through in chunks (512 samples, then 88).
TEST(Fused, TrainsTheSameBitsWhateverTheThreadCount) {
  const std::string wide = R"({"type": "Flatten"}, {"type": "Dense", "units": 256, "activation": "relu"},
                              {"type": "Dense", "units": 80, "activation": "tanh"}, {"type": "Dense", "units": 10, "activation": "sigmoid"})";
  const std::string paper = R"({"type": "Flatten"}, {"type": "Dense", "units": 100, "activation": "relu"},
                               {"type": "Dense", "units": 10, "activation": "sigmoid"})";
  const int before = torch::get_num_threads();
  for (const auto& [name, layers] : {std::pair{"wide", wide}, std::pair{"paper", paper}}) {
    for (const int64_t batch : {32, 600}) {
      SCOPED_TRACE(std::string(name) + " model, batch " + std::to_string(batch));
      Config config = config_with(layers, "");
      config.training.batch_size = batch;
      const Split data = sparse_synthetic(batch == 32 ? 200 : 1300, 1);
      std::vector<Trained> runs;
      for (const int threads : {1, 2, 3}) {
        torch::set_num_threads(threads);
        runs.push_back(train(config, true, false, data));
      }
      torch::set_num_threads(before);
      ASSERT_EQ(runs[0].step, "fused");
      for (size_t r = 1; r < runs.size(); ++r) {
        SCOPED_TRACE(std::to_string(r + 1) + " threads");
        EXPECT_TRUE(torch::equal(runs[r].params, runs[0].params));
        EXPECT_TRUE(torch::equal(runs[r].m, runs[0].m));
        EXPECT_TRUE(torch::equal(runs[r].v, runs[0].v));
        EXPECT_EQ(runs[r].history.loss, runs[0].history.loss);
        EXPECT_EQ(runs[r].history.accuracy, runs[0].history.accuracy);
      }
    }
  }
}

// A batch larger than the step's chunk (512 samples) is worked through chunk by chunk, the last
// one short: 600 = 512 + 88, and 1300 samples are two such batches and one of 100. A sample of a
// chunk read at the wrong place, or a chunk's gradient lost, is off by far more than rounding.
TEST(Fused, LargeBatchesInChunksTrainWhatTheAutogradStepTrains) {
  const std::string layers = R"({"type": "Flatten"}, {"type": "Dense", "units": 300, "activation": "relu"},
                                {"type": "Dense", "units": 10, "activation": "softmax"})";
  Config config = config_with(layers, "");
  config.training.batch_size = 600;
  const Split data = sparse_synthetic(1300, 1);
  const Trained fused = train(config, true, false, data), reference = train(config, false, false, data);
  ASSERT_EQ(fused.step, "fused");
  EXPECT_LT(relative_error(fused.params, reference.params), 5e-6);
  EXPECT_LT(relative_error(fused.m, reference.m), 5e-6);
  EXPECT_LT(relative_error(fused.v, reference.v), 5e-6);
  for (size_t e = 0; e < 2; ++e) EXPECT_NEAR(fused.history.loss[e], reference.history.loss[e], 1e-5 * reference.history.loss[e]);
}

TEST(Fused, SaturatedSigmoidTiesCountAsKerasCountsThem) {
  // Output bias +100: every sigmoid output is exactly 1.0f, argmax ties resolve to class 0, and
  // the running accuracy is the share of class-0 labels (1 in 10), on both steps. Under
  // accuracy_argmax "logits" (Keras 3.8 and earlier on TensorFlow) the ties break by logit instead.
  Config config = config_with(R"({"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "sigmoid"})",
                              R"("optimizer": {"learning_rate": 1e-9})");
  config.training.epochs = 1;
  const Split train = sparse_synthetic(200, 1), test = sparse_synthetic(50, 2);
  for (const AccuracyArgmax rule : {AccuracyArgmax::outputs, AccuracyArgmax::logits})
    for (bool fused : {true, false}) {
      TrainingConfig t = config.training;
      t.fused = fused;
      t.accuracy_argmax = rule;
      Model model(config.model, kImageShape, 7);
      {
        torch::NoGradGuard no_grad;
        for (auto& p : model->named_parameters())
          if (p.key().find("bias") != std::string::npos) p.value().fill_(100.0);
      }
      // The logits' argmax before training (a learning rate of 1e-9 leaves it as it is).
      const auto logits_accuracy = [&](const Split& s) {
        torch::NoGradGuard no_grad;
        return model->logits(s.images).argmax(1).eq(s.labels).to(torch::kDouble).mean().item<double>();
      };
      const double train_logits = logits_accuracy(train), test_logits = logits_accuracy(test);
      ASSERT_NE(train_logits, 0.1);  // the two rules differ on this data
      Trainer trainer(model, t, torch::kCPU);
      const History h = trainer.fit(train, Split{}, test, FitOptions{}).history;
      const std::string what = std::string(fused ? "fused" : "autograd") + (rule == AccuracyArgmax::logits ? ", logits" : "");
      EXPECT_EQ(trainer.step_kind().rfind(fused ? "fused" : "autograd", 0), 0u) << what;
      if (rule == AccuracyArgmax::outputs) {
        EXPECT_DOUBLE_EQ(h.accuracy[0], 0.1) << what;
      } else {
        EXPECT_DOUBLE_EQ(h.accuracy[0], train_logits) << what;
        EXPECT_DOUBLE_EQ(h.test_accuracy[0], test_logits) << what;  // evaluate() follows the same rule
      }
    }
}

TEST(Fused, RefusesWhatItDoesNotImplementAndSaysWhy) {
  const std::string dense = R"({"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"})";
  const std::vector<std::pair<Config, std::string>> refused = {
      {config_with(R"({"type": "Conv2D", "filters": 2, "kernel_size": 3}, )" + dense, ""), "found Conv2D"},
      {config_with(R"({"type": "Flatten"}, {"type": "Dropout", "rate": 0.5}, {"type": "Dense", "units": 10, "activation": "softmax"})", ""), "found Dropout"},
      {config_with(dense, R"("augmentation": {"rotation_range": 5})"), "augmentation"},
      {config_with(dense, R"("loss": {"semantics": "renormalized"})"), "logits"},
      {config_with(dense, R"("fused": false)"), "training.fused is false"},
  };
  for (const auto& [config, why] : refused) {
    Model model(config.model, kImageShape, 0);
    const std::string reason = fused_unsupported(model, config.training, torch::kCPU);
    EXPECT_NE(reason.find(why), std::string::npos) << "got: " << reason;
    Trainer trainer(model, config.training, torch::kCPU);
    EXPECT_EQ(trainer.step_kind(), "autograd (" + reason + ")");
  }
  const Config ok = config_with(dense, "");
  Model model(ok.model, kImageShape, 0);
  EXPECT_EQ(fused_unsupported(model, ok.training, torch::kCPU), "");
#ifdef MNIST_WITH_CUDA  // the kernels cover CUDA: whether a GPU is present is the trainer's concern
  EXPECT_EQ(fused_unsupported(model, ok.training, torch::Device(torch::kCUDA, 0)), "");
#else
  EXPECT_NE(fused_unsupported(model, ok.training, torch::Device(torch::kCUDA, 0)).find("has no CUDA"), std::string::npos);
#endif
}

// Evaluation reads the step's forward (fused_logits): for every covered model shape, and a wide
// hidden layer cut in bands like the first, the model's own logits to float rounding (the same
// sums without 0 * w, in another order); each sample's the same bits alone or among others and
// whatever the thread count; and nothing for what it does not cover.
TEST(Fused, EvaluationLogitsAreTheModelsLogits) {
  std::vector<Case> cases = covered_cases();
  cases.push_back({"wide hidden layer", R"({"type": "Flatten"}, {"type": "Dense", "units": 256, "activation": "relu"},
                                          {"type": "Dense", "units": 80, "activation": "tanh"}, {"type": "Dense", "units": 10, "activation": "softmax"})", ""});
  const torch::Tensor x = sparse_synthetic(100, 5).images;  // 100: three passes of 32 and one of 4 on one thread
  const int before = torch::get_num_threads();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Config config = config_with(c.layers, c.training);
    Model model(config.model, kImageShape, 7);
    torch::NoGradGuard no_grad;
    const torch::Tensor z = fused_logits(*model, x), want = model->logits(x);
    ASSERT_TRUE(z.defined());
    ASSERT_EQ(z.sizes(), want.sizes());
    EXPECT_LT(relative_error(z, want), 1e-6);  // measured at most 4.3e-7; a band left out is off by 0.3 or more
    EXPECT_TRUE(torch::equal(fused_logits(*model, x.narrow(0, 37, 5)), z.narrow(0, 37, 5)));
    EXPECT_TRUE(torch::equal(fused_logits(*model, x.view({100, 784})), z));
    for (const int threads : {1, 3}) {
      torch::set_num_threads(threads);
      EXPECT_TRUE(torch::equal(fused_logits(*model, x), z)) << threads << " threads";
    }
    torch::set_num_threads(before);
  }
  const std::string head = R"({"type": "Dense", "units": 10, "activation": "softmax"})";
  for (const std::string& layers : {R"({"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"}, )" + head,
                                    R"({"type": "Flatten"}, {"type": "Dropout", "rate": 0.5}, )" + head,
                                    R"({"type": "Flatten"}, {"type": "Dense", "units": 8, "activation": "softmax"}, )" + head}) {
    Model model(config_with(layers, "").model, kImageShape, 7);
    EXPECT_FALSE(fused_logits(*model, x).defined()) << layers;
  }
}

// The paper's own config on the real data, one epoch (1,875 steps) each way.
TEST(Fused, PaperConfigOnMnistMatchesTheAutogradStepAfterOneEpoch) {
  if (!std::filesystem::exists("data/mnist/train-images-idx3-ubyte"))
    GTEST_SKIP() << "data/mnist is missing: scripts/test.sh fetches it (scripts/fetch-data.sh)";
  const Split train_split = load_split("data/mnist", true), test_split = load_split("data/mnist", false);
  Config config = load_config_file("configs/paper.json");
  config.training.epochs = 1;
  auto run = [&](bool fused) {
    TrainingConfig t = config.training;
    t.fused = fused;
    Model model(config.model, kImageShape, t.seed);
    Trainer trainer(model, t, torch::kCPU);
    EXPECT_EQ(trainer.step_kind() == "fused", fused);
    const History h = trainer.fit(train_split, Split{}, test_split, FitOptions{}).history;
    return std::make_pair(h, trainer.optimizer().flat_params().clone());
  };
  const auto [fused, fused_params] = run(true);
  const auto [reference, reference_params] = run(false);
  // Measured: the weights differ by 4.3e-6 of their norm, at most 2.5e-5 absolutely. The largest
  // differences sit on border pixels that are non-zero in a handful of images: their gradients are
  // tiny, and Adam's m / (sqrt(v) + eps) magnifies the rounding of tiny gradients. The reported
  // metrics were identical to the digits Keras prints.
  const torch::Tensor diff = fused_params - reference_params;
  EXPECT_LT(diff.norm().item<double>(), 3e-5 * reference_params.norm().item<double>());
  EXPECT_LT(diff.abs().max().item<double>(), 1e-4);
  EXPECT_NEAR(fused.loss[0], reference.loss[0], 1e-5 * reference.loss[0]);
  EXPECT_NEAR(fused.accuracy[0], reference.accuracy[0], 2.0 / 60000);
  EXPECT_NEAR(fused.test_accuracy[0], reference.test_accuracy[0], 2.0 / 10000);
}

// The CUDA kernels' code (fused_kernels.h), run serially on the CPU, against the CPU's loops: two
// epochs of every covered case. The CUDA launcher (fused_cuda.cu) adds only the kernels' launch
// to what this checks.
TEST(Fused, KernelFormulationTrainsWhatTheCpuLoopsTrain) {
  for (const Case& c : covered_cases()) {
    SCOPED_TRACE(c.name);
    const Config config = config_with(c.layers, c.training);
    const Trained got = train(config, true, /*kernels=*/true), want = train(config, true);
    ASSERT_EQ(got.step, "fused (kernels, serially on the CPU)");
    ASSERT_EQ(want.step, "fused");
    // Dense sums in another order than the sparse rows' (and FMA contraction differs): float
    // rounding, as between the CPU step and autograd.
    EXPECT_LT(relative_error(got.params, want.params), 5e-6);
    EXPECT_LT(relative_error(got.m, want.m), 5e-6);
    for (size_t e = 0; e < got.history.epochs(); ++e) {
      EXPECT_NEAR(got.history.loss[e], want.history.loss[e], 1e-5 * want.history.loss[e]) << "epoch " << e + 1;
      EXPECT_NEAR(got.history.accuracy[e], want.history.accuracy[e], 1.0 / 200) << "epoch " << e + 1;  // at most one near-tie flips
    }
    std::vector<torch::Tensor> initial;
    for (const auto& p : Model(config.model, kImageShape, 7)->parameters()) initial.push_back(p.detach().reshape(-1));
    EXPECT_GT(relative_error(got.params, torch::cat(initial)), 1e-3);  // training moved the weights
  }
}

// The same on the paper's config and MNIST, one epoch (1,875 steps; about 9 s serially). Measured:
// the same loss and accuracy to 6 digits, weights 8.3e-7 of their norm apart (at most 7.3e-6).
TEST(Fused, KernelFormulationMatchesTheCpuLoopsOnAPaperEpoch) {
  if (!std::filesystem::exists("data/mnist/train-images-idx3-ubyte"))
    GTEST_SKIP() << "data/mnist is missing: scripts/test.sh fetches it (scripts/fetch-data.sh)";
  const Split data = load_split("data/mnist", true);
  const Split probe{data.images.narrow(0, 0, 100), data.labels.narrow(0, 0, 100), ""};  // fit's per-epoch evaluation, kept cheap
  Config config = load_config_file("configs/paper.json");
  config.training.epochs = 1;
  const Trained got = train(config, true, /*kernels=*/true, data, probe), want = train(config, true, false, data, probe);
  const torch::Tensor diff = got.params - want.params;
  EXPECT_LT(diff.norm().item<double>(), 1e-5 * want.params.norm().item<double>());
  EXPECT_LT(diff.abs().max().item<double>(), 1e-4);
  EXPECT_NEAR(got.history.loss[0], want.history.loss[0], 1e-5 * want.history.loss[0]);
  EXPECT_NEAR(got.history.accuracy[0], want.history.accuracy[0], 2.0 / 60000);
}
