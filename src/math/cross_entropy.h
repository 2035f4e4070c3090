// cross_entropy: softmax cross-entropy of one sample and its gradient, written once for the fused
// CPU step (fused.cpp) and the CUDA kernels (fused_kernels.h). loss.cpp's tensor form is the
// autograd step's (LibTorch's cross_entropy); tests/test_fused.cpp trains both against each other.
#pragma once
#include <cmath>
#include <cstdint>

#include "math/host_device.h"

namespace mnist {

// Keras's label-smoothed targets: `on` for the label, `off` for every other class.
struct SmoothedTargets {
  float on, off;
};
MNIST_HD inline SmoothedTargets smoothed_targets(double label_smoothing, int64_t classes) {
  const float off = static_cast<float>(label_smoothing / static_cast<double>(classes));
  return {static_cast<float>(1.0 - label_smoothing) + off, off};
}

// Sample with logits z[0..classes) and label y: returns its loss, lse(z) - sum_c t_c z_c, and
// writes d (batch-mean loss) / d z = (softmax(z) - t) * inv_len into dz, which may be z itself.
MNIST_HD inline float softmax_cross_entropy(const float* z, float* dz, int64_t classes, int64_t y, SmoothedTargets t,
                                            float inv_len) {
  float mx = z[0];
  for (int64_t c = 1; c < classes; ++c) mx = z[c] > mx ? z[c] : mx;
  float sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += expf(z[c] - mx);
  const float lse = mx + logf(sum);
  float dot = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const float target = c == y ? t.on : t.off;
    dot += target * z[c];
    dz[c] = (expf(z[c] - lse) - target) * inv_len;
  }
  return lse - dot;
}

}  // namespace mnist
