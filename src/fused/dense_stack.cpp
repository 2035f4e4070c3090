// dense_stack: a model's layers read as a Dense stack.
#include "fused/dense_stack.h"

namespace mnist {

std::string dense_stack_unsupported(const ModelImpl& model) {
  const auto& layers = model.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = *layers[i];
    if (l.is<FlattenSpec>() && i == 0) continue;
    if (!l.is<DenseSpec>()) return "it covers Flatten and Dense layers only (found " + l.type + ")";
    if (i + 1 < layers.size() && l.activation == Activation::softmax) return "a hidden softmax needs the autograd step";
  }
  if (layers.empty() || !layers.back()->is<DenseSpec>()) return "the model must end in a Dense layer";
  return "";
}

std::vector<DenseLayer> dense_stack(const ModelImpl& model) {
  std::vector<DenseLayer> stack;
  for (const auto& layer : model.layers()) {
    if (!layer->is<DenseSpec>()) continue;
    DenseLayer d;
    d.activation = layer->activation;
    for (const auto& p : layer->named_parameters(/*recurse=*/false)) (p.key() == "weight" ? d.weight : d.bias) = p.value();
    d.out = d.weight.size(0);
    d.in = d.weight.size(1);
    stack.push_back(d);
  }
  return stack;
}

}  // namespace mnist
