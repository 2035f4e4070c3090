// metrics: evaluating a model on a split (loss, accuracy, confusion matrix) and the per-class
// report that metrics.json and `mnist evaluate --json` share.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config/config.h"
#include "data/data.h"
#include "model/model.h"

namespace mnist {

struct Evaluation {
  double loss = 0;
  double accuracy = 0;
  torch::Tensor confusion;  // int64 [C, C] on CPU, rows = true label, columns = predicted
  // Samples whose largest output is shared by two or more classes. A float32 sigmoid is exactly
  // 1.0 above about 17, so saturated units tie and argmax (Keras's accuracy too) takes the lowest.
  int64_t top_output_ties = 0;
  // The accuracy under each argmax rule Keras has used: of the outputs, of the logits (`accuracy`
  // is the run's own rule's).
  double outputs_accuracy = 0, logits_accuracy = 0;
};

// Mean loss and accuracy over the split as Keras's evaluate() reports them (sample-weighted
// means). Accuracy, predictions and the confusion matrix are sparse_categorical_accuracy's argmax:
// of the model's OUTPUTS (ties between saturated sigmoids resolve to the lower class, as in Keras),
// or of the logits under training.accuracy_argmax = "logits" (Keras 3.8 and earlier on TensorFlow).
// batch_size 0: evaluation_batch_size(model).
Evaluation evaluate(Model& model, const Split& split, const TrainingConfig& training, int64_t batch_size = 0);

// Samples per evaluation pass: 10,000, or fewer for a model so wide that a pass's widest layer
// output would pass kEvaluationBytes (which bounds the memory an evaluation takes).
inline constexpr int64_t kEvaluationBytes = int64_t{256} << 20;
int64_t evaluation_batch_size(const ModelImpl& model);

// Every sample's outputs ([N, C], on the CPU) in evaluation mode, in passes of
// evaluation_batch_size, and the class each is counted as by the run's accuracy rule.
struct SplitOutputs {
  torch::Tensor outputs, predicted;
};
SplitOutputs split_outputs(Model& model, const Split& split, const TrainingConfig& training);

struct Mistake {
  torch::Tensor image;  // [1, 28, 28] on the CPU, values in [0, 1]
  int64_t truth = 0, predicted = 0;
  double confidence = 0;  // the model's output for the predicted class
  bool tied = false;       // another class has exactly the same output (saturated sigmoids)
};
struct MistakeSample {
  std::vector<Mistake> mistakes;  // the most confident first
  int64_t total_mistakes = 0, total_images = 0;
};
// The `limit` misclassified images of `split` on which the model was most confident, misclassified
// by the run's accuracy rule (training.accuracy_argmax, as evaluate counts them): total_mistakes is
// what evaluate's confusion matrix holds off its diagonal.
MistakeSample most_confident_mistakes(Model& model, const Split& split, const TrainingConfig& training, int64_t limit);

// Confusion matrix from predicted and true labels (any device; result on CPU).
torch::Tensor confusion_matrix(const torch::Tensor& predicted, const torch::Tensor& truth, int64_t classes);

// {"<split>_loss", "<split>_accuracy", "confusion_matrix", "per_class": [{class, precision, recall,
// f1, support}], "macro_avg": {...}, "top_output_ties"}; split is "test" unless told otherwise.
std::vector<std::vector<int64_t>> to_rows(const torch::Tensor& confusion);

nlohmann::json metrics_json(const Evaluation& e, const std::vector<std::string>& class_names,
                            const std::string& split = "test");

}  // namespace mnist
