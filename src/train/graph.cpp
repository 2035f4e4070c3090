// graph: at::cuda::CUDAGraph around the trainer's epoch, and the stream it is captured on.
#include "train/graph.h"

#include <stdexcept>
#include <string>

#ifdef MNIST_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace mnist {

// A graph holds every kernel of the epoch: about 40 per step for the paper's model. Beyond this
// many steps (batch_size below 8 on MNIST's 60,000 images) the eager loop is used instead.
constexpr int64_t kMaxGraphSteps = 8192;

std::string cuda_graph_unsupported(const Model& model, const TrainingConfig& config, torch::Device device, int64_t steps) {
  if (!config.cuda_graph) return "training.cuda_graph is false";
  if (!device.is_cuda()) return "CUDA graphs need a CUDA device";
#ifndef MNIST_WITH_CUDA
  return "this build's Torch has no CUDA";
#endif
  if (model->has_noise()) return "Dropout draws each step's mask from a seed the host sets";
  if (config.augmentation.enabled()) return "augmentation draws each step's transforms from a seed the host sets";
  if (steps > kMaxGraphSteps)
    return std::to_string(steps) + " steps per epoch, more than the " + std::to_string(kMaxGraphSteps) + " one graph holds";
  return "";
}

#ifdef MNIST_WITH_CUDA

struct EpochGraph::Impl {
  explicit Impl(c10::cuda::CUDAStream stream) : stream(stream) {}
  c10::cuda::CUDAStream stream;
  at::cuda::CUDAGraph graph;
};

struct EpochGraph::StreamScope::State {
  c10::cuda::CUDAStream previous, own;
  c10::cuda::CUDAStreamGuard guard;
  State(c10::cuda::CUDAStream previous, c10::cuda::CUDAStream own) : previous(previous), own(own), guard(own) {}
};

EpochGraph::EpochGraph(torch::Device device)
    : impl_(std::make_unique<Impl>(
          c10::cuda::getStreamFromPool(false, device.has_index() ? device.index() : c10::cuda::current_device()))) {}

EpochGraph::~EpochGraph() = default;

EpochGraph::StreamScope::StreamScope(EpochGraph& graph) {
  const c10::cuda::CUDAStream own = graph.impl_->stream;
  const c10::cuda::CUDAStream previous = c10::cuda::getCurrentCUDAStream(own.device_index());
  at::cuda::CUDAEvent queued;
  queued.record(previous);
  queued.block(own);
  state_ = std::make_unique<State>(previous, own);
}

EpochGraph::StreamScope::~StreamScope() {
  at::cuda::CUDAEvent done;
  done.record(state_->own);
  done.block(state_->previous);
}

namespace {

// A failed capture names the way around it: the eager loop trains the same model.
[[noreturn]] void capture_failed(const std::exception& e) {
  std::string what = e.what();
  what = what.substr(0, what.find('\n'));
  throw std::runtime_error("capturing the training epoch as a CUDA graph failed (" + what +
                           "); train without it: --set training.cuda_graph=false");
}

}  // namespace

void EpochGraph::capture(const std::function<void()>& enqueue) {
  try {
    impl_->graph.capture_begin();
  } catch (const std::exception& e) {
    capture_failed(e);
  }
  try {
    enqueue();
  } catch (const std::exception& e) {
    try {
      impl_->graph.capture_end();  // ends the stream's capture so the stream stays usable
    } catch (...) {
    }
    capture_failed(e);
  }
  try {
    impl_->graph.capture_end();
  } catch (const std::exception& e) {
    capture_failed(e);
  }
  captured_ = true;
}

void EpochGraph::replay() {
  if (!captured_) throw std::logic_error("EpochGraph::replay before capture");
  impl_->graph.replay();
}

#else  // Torch without CUDA: never constructed, since cuda_graph_unsupported says why.

struct EpochGraph::Impl {};
struct EpochGraph::StreamScope::State {};

EpochGraph::EpochGraph(torch::Device) { throw std::runtime_error("CUDA graphs need a Torch built with CUDA"); }
EpochGraph::~EpochGraph() = default;
EpochGraph::StreamScope::StreamScope(EpochGraph&) {}
EpochGraph::StreamScope::~StreamScope() = default;
void EpochGraph::capture(const std::function<void()>&) { throw std::runtime_error("CUDA graphs need a Torch built with CUDA"); }
void EpochGraph::replay() { throw std::runtime_error("CUDA graphs need a Torch built with CUDA"); }

#endif

}  // namespace mnist
