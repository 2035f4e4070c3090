// loss: Keras's sparse_categorical_crossentropy, in the two forms Keras actually computes.
//
//  tensorflow   (default; what the paper ran) Keras on TensorFlow finds the logits that its sigmoid
//               and softmax activations cache on their output tensor (`_keras_logits`) and computes
//               softmax cross-entropy on them. With the paper's sigmoid output this is NOT a
//               sigmoid loss: the loss sees softmax(z) although the model outputs sigmoid(z).
//  renormalized Keras on JAX and torch: p = output / sum(output), clipped to [1e-7, 1 - 1e-7],
//               loss = -log p[label]. With a sigmoid output and every unit underflowed the sum is
//               0 and the loss is NaN; train.cpp detects that and stops.
//  from_logits  the model's outputs are logits (a linear last layer): softmax cross-entropy on them.
//
// Reduction is Keras's default "sum_over_batch_size": the mean over the batch.
#pragma once
#include <torch/torch.h>

#include "config/config.h"

namespace mnist {

inline constexpr double kKerasEpsilon = 1e-7;  // keras.config.epsilon()

// `logits`: the last layer's pre-activation values [N, C]; `labels`: int64 [N].
torch::Tensor sparse_categorical_crossentropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                              Activation output_activation, const LossConfig& config);

}  // namespace mnist
