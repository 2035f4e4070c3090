// metrics: evaluation passes and classification reports.
#include "train/metrics.h"

#include <algorithm>

#include "fused/forward.h"
#include "model/loss.h"
#include "train/float_env.h"

namespace mnist {

torch::Tensor confusion_matrix(const torch::Tensor& predicted, const torch::Tensor& truth, int64_t classes) {
  return torch::bincount(truth * classes + predicted, /*weights=*/{}, classes * classes).view({classes, classes}).to(torch::kCPU);
}

int64_t evaluation_batch_size(const ModelImpl& model) {
  int64_t widest = 1;
  for (const auto& layer : model.layers()) widest = std::max(widest, numel(layer->output_shape));
  // Two float32 outputs of that width are alive at once (a layer's input and its output).
  return std::clamp<int64_t>(kEvaluationBytes / (2 * 4 * widest), 32, 10000);
}

namespace {

// The logits an evaluation reads: the fused step's forward where it covers the model (fused.h),
// else the model's modules.
torch::Tensor evaluation_logits(Model& model, const torch::Tensor& x) {
  const torch::Tensor z = fused_logits(*model, x);
  return z.defined() ? z : model->logits(x);
}

// The class each sample is counted as, by the run's accuracy rule: the argmax of the outputs `out`
// (activate(z, output)), or of the activation `argmax_of` of the logits `z`.
torch::Tensor predicted_classes(const torch::Tensor& z, const torch::Tensor& out, Activation output, Activation argmax_of) {
  return argmax_of == output ? out.argmax(1) : activate(z, argmax_of).argmax(1);
}

}  // namespace

Evaluation evaluate(Model& model, const Split& split, const TrainingConfig& training, int64_t batch_size) {
  const FlushDenormals as_tensorflow;  // float_env.h
  if (batch_size <= 0) batch_size = evaluation_batch_size(*model);
  const Activation output = model->output_activation(), argmax_of = accuracy_activation(output, training);
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n = split.size();
  torch::Tensor loss_sum = torch::zeros({}, split.images.options());
  torch::Tensor ties = torch::zeros({}, split.labels.options());
  torch::Tensor outputs_correct = torch::zeros({}, split.labels.options()), logits_correct = torch::zeros({}, split.labels.options());
  std::vector<torch::Tensor> predictions;
  int64_t classes = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t len = std::min(batch_size, n - start);
    const torch::Tensor x = split.images.narrow(0, start, len), y = split.labels.narrow(0, start, len);
    const torch::Tensor z = evaluation_logits(model, x);
    classes = z.size(1);
    loss_sum += sparse_categorical_crossentropy(z, y, output, training.loss) * static_cast<double>(len);
    const torch::Tensor out = activate(z, output);
    ties += out.eq(std::get<0>(out.max(1, /*keepdim=*/true))).sum(1).gt(1).sum();
    outputs_correct += out.argmax(1).eq(y).sum();
    logits_correct += z.argmax(1).eq(y).sum();
    predictions.push_back(predicted_classes(z, out, output, argmax_of));
  }
  model->train(was_training);
  const torch::Tensor predicted = torch::cat(predictions);
  Evaluation e;
  e.confusion = confusion_matrix(predicted, split.labels, classes);
  e.loss = loss_sum.item<double>() / static_cast<double>(n);
  e.top_output_ties = ties.item<int64_t>();
  e.accuracy = static_cast<double>(e.confusion.diag().sum().item<int64_t>()) / static_cast<double>(n);
  e.outputs_accuracy = static_cast<double>(outputs_correct.item<int64_t>()) / static_cast<double>(n);
  e.logits_accuracy = static_cast<double>(logits_correct.item<int64_t>()) / static_cast<double>(n);
  return e;
}

SplitOutputs split_outputs(Model& model, const Split& split, const TrainingConfig& training) {
  const FlushDenormals as_tensorflow;  // float_env.h
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const Activation output = model->output_activation(), argmax_of = accuracy_activation(output, training);
  std::vector<torch::Tensor> outputs, predicted;  // in passes of evaluation_batch_size: a wide model's would not fit
  const int64_t step = evaluation_batch_size(*model);
  for (int64_t start = 0; start < split.size(); start += step) {
    const torch::Tensor z = evaluation_logits(model, split.images.narrow(0, start, std::min(step, split.size() - start)));
    outputs.push_back(activate(z, output));
    predicted.push_back(predicted_classes(z, outputs.back(), output, argmax_of));
  }
  model->train(was_training);
  return {torch::cat(outputs).to(torch::kCPU), torch::cat(predicted).to(torch::kCPU)};
}

MistakeSample most_confident_mistakes(Model& model, const Split& split, const TrainingConfig& training, int64_t limit) {
  const SplitOutputs all = split_outputs(model, split, training);
  const torch::Tensor& out = all.outputs;
  const torch::Tensor& predicted = all.predicted;
  const torch::Tensor confidence = out.gather(1, predicted.unsqueeze(1)).squeeze(1);  // the output of the class counted
  const torch::Tensor wrong = predicted.ne(split.labels.to(torch::kCPU)).nonzero().squeeze(1);
  MistakeSample sample;
  sample.total_images = split.size();
  sample.total_mistakes = wrong.size(0);
  const torch::Tensor order = wrong.index_select(0, std::get<1>(confidence.index_select(0, wrong).sort(0, /*descending=*/true)));
  const torch::Tensor chosen = order.narrow(0, 0, std::min(limit, order.size(0))).to(torch::kCPU);
  const torch::Tensor images = split.images.index_select(0, chosen.to(split.images.device())).to(torch::kCPU);
  const torch::Tensor truth = split.labels.index_select(0, chosen.to(split.labels.device())).to(torch::kCPU);
  const torch::Tensor pred = predicted.index_select(0, chosen.to(predicted.device())).to(torch::kCPU);
  const torch::Tensor conf = confidence.index_select(0, chosen.to(confidence.device())).to(torch::kCPU);
  const torch::Tensor outputs = out.index_select(0, chosen.to(out.device())).to(torch::kCPU);
  const torch::Tensor tied = outputs.eq(conf.unsqueeze(1)).sum(1).gt(1);
  for (int64_t i = 0; i < chosen.size(0); ++i)
    sample.mistakes.push_back(
        {images[i], truth[i].item<int64_t>(), pred[i].item<int64_t>(), conf[i].item<double>(), tied[i].item<bool>()});
  return sample;
}

std::vector<std::vector<int64_t>> to_rows(const torch::Tensor& confusion) {
  const auto cm = confusion.accessor<int64_t, 2>();
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(confusion.size(0)));
  for (int64_t i = 0; i < confusion.size(0); ++i)
    for (int64_t j = 0; j < confusion.size(1); ++j) rows[static_cast<size_t>(i)].push_back(cm[i][j]);
  return rows;
}

nlohmann::json metrics_json(const Evaluation& e, const std::vector<std::string>& class_names, const std::string& split) {
  using nlohmann::json;
  const int64_t classes = e.confusion.size(0);
  const auto cm = e.confusion.accessor<int64_t, 2>();
  json matrix = json::array(), per_class = json::array();
  double macro_p = 0, macro_r = 0, macro_f = 0;
  for (int64_t i = 0; i < classes; ++i) {
    json row = json::array();
    int64_t predicted_i = 0, actual_i = 0;
    for (int64_t j = 0; j < classes; ++j) {
      row.push_back(cm[i][j]);
      actual_i += cm[i][j];
      predicted_i += cm[j][i];
    }
    matrix.push_back(row);
    const double tp = static_cast<double>(cm[i][i]);
    // sklearn's classification_report convention: 0 where a ratio is undefined.
    const double precision = predicted_i ? tp / static_cast<double>(predicted_i) : 0.0;
    const double recall = actual_i ? tp / static_cast<double>(actual_i) : 0.0;
    const double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
    per_class.push_back({{"class", class_names.at(static_cast<size_t>(i))},
                         {"precision", precision},
                         {"recall", recall},
                         {"f1", f1},
                         {"support", actual_i}});
    macro_p += precision;
    macro_r += recall;
    macro_f += f1;
  }
  const double c = static_cast<double>(classes);
  return {{split + "_loss", e.loss},
          {split + "_accuracy", e.accuracy},
          {"top_output_ties", e.top_output_ties},
          {"confusion_matrix", matrix},
          {"per_class", per_class},
          {"macro_avg", {{"precision", macro_p / c}, {"recall", macro_r / c}, {"f1", macro_f / c}}}};
}

}  // namespace mnist
