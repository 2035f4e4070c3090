// loss: sparse_categorical_crossentropy with Keras's TensorFlow or JAX/torch semantics.
#include "loss.h"

#include "model.h"

namespace mnist {

torch::Tensor sparse_categorical_crossentropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                              Activation output_activation, const LossConfig& config) {
  namespace F = torch::nn::functional;
  if (config.from_logits) return F::cross_entropy(activate(logits, output_activation), labels);
  if (config.semantics == LossSemantics::tensorflow) return F::cross_entropy(logits, labels);
  const torch::Tensor out = activate(logits, output_activation);
  const torch::Tensor p = (out / out.sum(-1, /*keepdim=*/true)).clamp(kKerasEpsilon, 1.0 - kKerasEpsilon);
  return -p.log().gather(1, labels.unsqueeze(1)).squeeze(1).mean();
}

}  // namespace mnist
