// metrics: evaluating a model on a split (loss, accuracy, confusion matrix) and the per-class
// report that metrics.json and `mnist evaluate --json` share.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "model.h"

namespace mnist {

struct Evaluation {
  double loss = 0;
  double accuracy = 0;
  torch::Tensor confusion;  // int64 [C, C] on CPU, rows = true label, columns = predicted
  // Samples whose largest output is shared by two or more classes. A float32 sigmoid is exactly
  // 1.0 above about 17, so saturated units tie and argmax (Keras's accuracy too) takes the lowest.
  int64_t top_output_ties = 0;
};

// Mean loss and accuracy over the split as Keras's evaluate() reports them (sample-weighted
// means). Accuracy is sparse_categorical_accuracy on the model's OUTPUTS: argmax of the sigmoid,
// so ties between saturated units resolve to the lower class, exactly as in Keras.
Evaluation evaluate(Model& model, const Split& split, const LossConfig& loss, int64_t batch_size = 10000);

// Confusion matrix from predicted and true labels (any device; result on CPU).
torch::Tensor confusion_matrix(const torch::Tensor& predicted, const torch::Tensor& truth, int64_t classes);

// {"<split>_loss", "<split>_accuracy", "confusion_matrix", "per_class": [{class, precision, recall,
// f1, support}], "macro_avg": {...}, "top_output_ties"}; split is "test" unless told otherwise.
nlohmann::json metrics_json(const Evaluation& e, const std::vector<std::string>& class_names,
                            const std::string& split = "test");

}  // namespace mnist
