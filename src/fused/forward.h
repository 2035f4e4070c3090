// forward: the fused step's forward pass for evaluation, on the model's own weights. Apart from
// fused.h so that evaluation (train/metrics.cpp) needs nothing of the training step.
#pragma once
#include <torch/torch.h>

#include "model/model.h"

namespace mnist {

// The logits of a Flatten + Dense stack on CPU images `x` ([N, 1, 28, 28] or flat), computed by
// the CPU step's forward code (each image's non-zero pixels, the same bands and loops), so a
// sample's logits do not depend on the samples beside it or on the thread count. On MNIST's test
// set about twice as fast as Torch's dense products (packing the pixels costs about as much as
// the multiply-adds).
// Undefined where the model or `x` is anything else (evaluation then runs the model's modules).
torch::Tensor fused_logits(const ModelImpl& model, const torch::Tensor& x);

}  // namespace mnist
