// loss: sparse_categorical_crossentropy with Keras's TensorFlow or JAX/torch semantics.
#include "model/loss.h"

#include "model/model.h"

namespace mnist {

torch::Tensor sparse_categorical_crossentropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                              Activation output_activation, const LossConfig& config) {
  namespace F = torch::nn::functional;
  const double ls = config.label_smoothing;
  // LibTorch's label smoothing is Keras's: targets y (1 - ls) + ls / classes.
  const auto options = F::CrossEntropyFuncOptions().label_smoothing(ls);
  if (config.from_logits) return F::cross_entropy(activate(logits, output_activation), labels, options);
  if (config.semantics == LossSemantics::tensorflow) return F::cross_entropy(logits, labels, options);
  const torch::Tensor out = activate(logits, output_activation);
  const torch::Tensor log_p = (out / out.sum(-1, /*keepdim=*/true)).clamp(kKerasEpsilon, 1.0 - kKerasEpsilon).log();
  const torch::Tensor nll = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1);
  if (ls == 0) return nll.mean();
  return ((1.0 - ls) * nll - ls * log_p.mean(-1)).mean();
}

}  // namespace mnist
