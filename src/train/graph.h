// graph: a whole training epoch recorded once as a CUDA graph and replayed for every later epoch.
//
// The paper's model is launch-bound on a GPU: an autograd step is about 40 kernels of a few
// microseconds of work each, and the host cannot queue them as fast as the GPU runs them.
// Replaying an epoch as one graph takes the host out of the loop: one launch per epoch instead of
// one per kernel (about 75,000 for the autograd step, 11,000 for the fused step's kernels).
// A captured step must read everything that changes between epochs from buffers that keep their
// address: the trainer refills the data order and the per-step optimizer scalars
// (KerasOptimizer::step_table) before each replay. Capture records without running anything, so
// the trainer first runs one epoch eagerly on the same stream: its warm-up (cuBLAS handles,
// autograd's device thread, the allocator's blocks), as torch.cuda.graph's documentation asks.
// Torch without CUDA compiles this file as stubs that say so.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "config/config.h"
#include "model/model.h"

namespace mnist {

// Why the CUDA-graph epoch cannot train this run ("" when it can). `steps` is steps per epoch.
std::string cuda_graph_unsupported(const Model& model, const TrainingConfig& config, torch::Device device, int64_t steps);

class EpochGraph {
 public:
  explicit EpochGraph(torch::Device device);  // picks a stream of its own from Torch's pool
  ~EpochGraph();
  EpochGraph(const EpochGraph&) = delete;
  EpochGraph& operator=(const EpochGraph&) = delete;

  // While a StreamScope lives, the calling thread's work on the device goes to the graph's stream
  // (CUDA cannot capture the default stream), after the work queued before it; when it ends, the
  // previous stream waits for what was queued on the graph's stream.
  class StreamScope {
   public:
    explicit StreamScope(EpochGraph& graph);
    ~StreamScope();
    StreamScope(const StreamScope&) = delete;
    StreamScope& operator=(const StreamScope&) = delete;

   private:
    struct State;
    std::unique_ptr<State> state_;
  };

  // Records what `enqueue` queues on the graph's stream (inside a StreamScope), without running it.
  void capture(const std::function<void()>& enqueue);
  void replay();
  bool captured() const { return captured_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool captured_ = false;
};

}  // namespace mnist
