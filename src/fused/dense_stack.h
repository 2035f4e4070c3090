// dense_stack: the one description of the models the fused paths run, a Flatten and then Dense
// layers: the fused steps take their offsets into the optimizer's flat buffers from it
// (FusedDenseStep), the evaluation forward its copies of the weights (forward.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/model.h"

namespace mnist {

struct DenseLayer {
  torch::Tensor weight, bias;  // the model's own tensors: [out, in] and [out] (bias undefined: none)
  int64_t in = 0, out = 0;
  Activation activation = Activation::linear;
};

// Why the fused loops cannot run `model`'s layers (they take a Flatten, then Dense layers, no
// hidden softmax); empty when they can. Training (fused_unsupported) and evaluation ask.
std::string dense_stack_unsupported(const ModelImpl& model);

// `model`'s Dense layers in order (its Flatten is the images read flat); for a model that
// dense_stack_unsupported accepts.
std::vector<DenseLayer> dense_stack(const ModelImpl& model);

}  // namespace mnist
