// float_env: while a FlushDenormals lives, denormal results and inputs are zero on this thread and
// on every LibTorch worker (as in TensorFlow's kernels); after it, IEEE arithmetic again.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <vector>

#include "train/float_env.h"

namespace {

// On the calling thread: does a denormal product come out as 0 (FTZ), and does a denormal input
// count as 0 (DAZ)?
std::pair<bool, bool> flushes_here() {
  volatile float tiny = 1e-30f, scale = 1e-10f, denormal = 1e-40f, one = 1.0f;
  return {tiny * scale == 0.0f, denormal * one == 0.0f};
}

// The same on every intra-op thread: one piece of work per thread, each on its own thread (this
// file is compiled with OpenMP, as fused.cpp is, so the pieces do run on the workers).
std::vector<std::pair<bool, bool>> flushes_on_workers() {
  const int64_t threads = at::get_num_threads();
  std::vector<std::pair<bool, bool>> seen(static_cast<size_t>(threads));
  std::vector<int> ran_on(static_cast<size_t>(threads), -1);
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      seen[static_cast<size_t>(t)] = flushes_here();
      ran_on[static_cast<size_t>(t)] = at::get_thread_num();
    }
  });
  for (int64_t t = 0; t < threads; ++t) EXPECT_EQ(ran_on[static_cast<size_t>(t)], t) << "piece " << t << " did not run on thread " << t;
  return seen;
}

}  // namespace

TEST(FloatEnv, DenormalsAreZeroWhileTrainingAndIeeeAfter) {
#if !(defined(__SSE__) || defined(__x86_64__))
  GTEST_SKIP() << "no MXCSR on this CPU: FlushDenormals does nothing here";
#endif
  const int before = torch::get_num_threads();
  torch::set_num_threads(2);
  EXPECT_EQ(flushes_here(), std::make_pair(false, false));
  {
    const mnist::FlushDenormals as_tensorflow;
    EXPECT_EQ(flushes_here(), std::make_pair(true, true));
    for (const auto& worker : flushes_on_workers()) EXPECT_EQ(worker, std::make_pair(true, true));
    {
      const mnist::FlushDenormals nested;  // evaluate() inside fit(): still flushing after it
    }
    EXPECT_EQ(flushes_here(), std::make_pair(true, true));
  }
  EXPECT_EQ(flushes_here(), std::make_pair(false, false));
  for (const auto& worker : flushes_on_workers()) EXPECT_EQ(worker, std::make_pair(false, false));
  torch::set_num_threads(before);
}
