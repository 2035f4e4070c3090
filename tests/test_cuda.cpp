// CUDA: the autograd step on the GPU, eager and replayed as CUDA graphs (src/graph.h), against the
// eager loop and the CPU. The tests that need a GPU skip, saying so, where there is none (CI has
// none); the reasons the graph gives for not covering a run are checked everywhere.
#include <gtest/gtest.h>

#include "config/config.h"
#include "synthetic.h"
#include "train/graph.h"
#include "train/train.h"

using namespace mnist;

namespace {

#define SKIP_WITHOUT_GPU()                                                                              \
  if (!torch::cuda::is_available())                                                                   \
  GTEST_SKIP() << "no CUDA device here: the CUDA tests run on a GPU machine (build against a CUDA "     \
                  "LibTorch, see README \"Benchmark\")"

// AdamW under a cosine schedule (per-step scalars from the table), label smoothing, 4 epochs:
// the first runs eagerly, the second is captured, the last two are replays.
Config config_with(const std::string& layers) {
  return parse_config_text(R"({"model": {"layers": [{"type": "Flatten"}, )" + layers + R"(]},
    "training": {"epochs": 4, "batch_size": 16, "seed": 5, "optimizer": {"name": "adamw", "weight_decay": 0.01},
      "lr_schedule": {"name": "cosine_decay"}, "loss": {"label_smoothing": 0.1}}})",
                           "test");
}

// The autograd step's case: a BatchNormalization, whose moving statistics the graph updates.
Config autograd_config() {
  return config_with(R"({"type": "Dense", "units": 64, "activation": "relu"}, {"type": "BatchNormalization"},
      {"type": "Dense", "units": 10, "activation": "softmax"})");
}

// The fused step's case: two hidden layers (relu, tanh without bias) and the paper's sigmoid head.
Config fused_config() {
  return config_with(R"({"type": "Dense", "units": 100, "activation": "relu"},
      {"type": "Dense", "units": 40, "activation": "tanh", "use_bias": false},
      {"type": "Dense", "units": 10, "activation": "sigmoid"})");
}

Config with(Config c, bool fused, bool cuda_graph) {
  c.training.fused = fused;
  c.training.cuda_graph = cuda_graph;
  return c;
}

struct CudaRun {
  History history;
  torch::Tensor params;
  std::string step;
};

CudaRun train_on(torch::Device device, const Config& config) {
  const Split train = class_blocks(200, 1, 0.3, 1.0), test = class_blocks(50, 2, 0.3, 1.0);
  Model model(config.model, kImageShape, 7);
  Trainer trainer(model, config.training, device);
  const Split train_d{train.images.to(device), train.labels.to(device)}, test_d{test.images.to(device), test.labels.to(device)};
  CudaRun r;
  r.history = trainer.fit(train_d, Split{}, test_d, FitOptions{}).history;
  r.step = trainer.step_kind();
  std::vector<torch::Tensor> state;
  for (const auto& [name, t] : model->state()) state.push_back(t.detach().reshape(-1).to(torch::kCPU));
  r.params = torch::cat(state);
  return r;
}

}  // namespace

TEST(CudaGraph, SaysWhyItDoesNotCoverARun) {
  const Config ok = autograd_config();
  Model model(ok.model, kImageShape, 0);
  const torch::Device cuda(torch::kCUDA, 0);
  TrainingConfig off = ok.training;
  off.cuda_graph = false;
  EXPECT_EQ(cuda_graph_unsupported(model, off, cuda, 13), "training.cuda_graph is false");
  EXPECT_EQ(cuda_graph_unsupported(model, ok.training, torch::kCPU, 13), "CUDA graphs need a CUDA device");
#ifdef MNIST_WITH_CUDA
  EXPECT_EQ(cuda_graph_unsupported(model, ok.training, cuda, 13), "");
  EXPECT_EQ(cuda_graph_unsupported(model, ok.training, cuda, 9000), "9000 steps per epoch, more than the 8192 one graph holds");
  const Config dropout = parse_config_text(R"({"model": {"layers": [{"type": "Flatten"}, {"type": "Dropout", "rate": 0.2},
      {"type": "Dense", "units": 10, "activation": "softmax"}]}})", "test");
  EXPECT_EQ(cuda_graph_unsupported(Model(dropout.model, kImageShape, 0), dropout.training, cuda, 13),
            "Dropout draws each step's mask from a seed the host sets");
  TrainingConfig augmenting = ok.training;
  augmenting.augmentation.rotation_range = 10;
  EXPECT_EQ(cuda_graph_unsupported(model, augmenting, cuda, 13), "augmentation draws each step's transforms from a seed the host sets");
#else
  EXPECT_EQ(cuda_graph_unsupported(model, ok.training, cuda, 13), "this build's Torch has no CUDA");
#endif
}

// The graph replays the very kernels the eager loop launches, in the same order, on the same data
// and optimizer scalars: the two runs should agree to the last bit; allow float rounding in case
// cuBLAS picks another algorithm on the graph's stream.
TEST(CudaGraph, ReplayedEpochsTrainWhatTheEagerLoopTrains) {
  SKIP_WITHOUT_GPU();
  const torch::Device cuda(torch::kCUDA, 0);
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused step" : "autograd step");
    const Config config = fused ? fused_config() : autograd_config();
    const CudaRun graph = train_on(cuda, with(config, fused, true));
    const CudaRun eager = train_on(cuda, with(config, fused, false));
    const std::string step = fused ? "fused" : "autograd (training.fused is false)";
    ASSERT_EQ(graph.step, step + ", cuda graph");
    ASSERT_EQ(eager.step, step);
    EXPECT_LT(relative_error(graph.params, eager.params), 1e-6);
    for (size_t e = 0; e < 4; ++e) {
      EXPECT_NEAR(graph.history.loss[e], eager.history.loss[e], 1e-6) << "epoch " << e + 1;
      EXPECT_EQ(graph.history.accuracy[e], eager.history.accuracy[e]) << "epoch " << e + 1;
      EXPECT_EQ(graph.history.learning_rate[e], eager.history.learning_rate[e]) << "epoch " << e + 1;
    }
  }
}

// The GPU trains what the CPU trains: same initial weights, data order and Keras update rule; the
// kernels sum in other orders, so they agree to float rounding over 52 steps. The fused step on
// CUDA (fused_cuda.cu) is checked against the CPU's fused step.
TEST(CudaGraph, TrainsWhatTheCpuTrains) {
  SKIP_WITHOUT_GPU();
  for (bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused step" : "autograd step");
    const Config config = with(fused ? fused_config() : autograd_config(), fused, true);
    const CudaRun gpu = train_on(torch::Device(torch::kCUDA, 0), config);
    const CudaRun cpu = train_on(torch::kCPU, config);
    ASSERT_EQ(gpu.step, (fused ? "fused" : "autograd (training.fused is false)") + std::string(", cuda graph"));
    EXPECT_LT(relative_error(gpu.params, cpu.params), fused ? 1e-5 : 1e-4);
    EXPECT_NEAR(gpu.history.loss.back(), cpu.history.loss.back(), 1e-4);
    EXPECT_NEAR(gpu.history.accuracy.back(), cpu.history.accuracy.back(), 2.0 / 200);
    EXPECT_NEAR(gpu.history.test_accuracy.back(), cpu.history.test_accuracy.back(), 2.0 / 50);
  }
}
