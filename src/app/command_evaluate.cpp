// command_evaluate: `mnist evaluate`: a model's loss, accuracy, confusion matrix and per-class
// scores on the test (or training) set, printed, and with --out written as metrics.json and heatmaps.
#include <iomanip>
#include <iostream>
#include <sstream>

#include "app/command.h"
#include "config/errors.h"
#include "interop/export.h"
#include "interop/rundir.h"
#include "train/metrics.h"
#ifdef MNIST_WITH_OPENCV
#include "report/plot.h"
#endif

namespace mnist {
namespace {

struct EvaluateFlags {
  std::string model, data, split = "test", out, predictions;
  bool json = false;
};

// --predictions: one CSV row per image of the split: index, label, the class counted (the run's
// rule), and every output.
void write_predictions(const std::string& file, const SplitOutputs& s, const torch::Tensor& labels) {
  std::ostringstream csv;
  csv << "index,label,predicted";
  for (int64_t c = 0; c < s.outputs.size(1); ++c) csv << ",output_" << c;
  csv << "\n" << std::setprecision(9);
  const torch::Tensor truth = labels.to(torch::kCPU);
  const auto out = s.outputs.accessor<float, 2>();
  const auto label = truth.accessor<int64_t, 1>(), predicted = s.predicted.accessor<int64_t, 1>();
  for (int64_t i = 0; i < s.outputs.size(0); ++i) {
    csv << i << "," << label[i] << "," << predicted[i];
    for (int64_t c = 0; c < s.outputs.size(1); ++c) csv << "," << out[i][c];
    csv << "\n";
  }
  write_file_atomic(file, csv.str());
}

void print_evaluation(std::ostream& out, const nlohmann::json& m, const std::string& split) {
  out << std::fixed << std::setprecision(4) << split << "_loss: " << m[split + "_loss"].get<double>() << "  " << split
      << "_accuracy: " << m[split + "_accuracy"].get<double>() << "  top_output_ties: " << m["top_output_ties"].get<int64_t>()
      << "\naccuracy by argmax: outputs " << m["accuracy_by_argmax"]["outputs"].get<double>() << ", logits "
      << m["accuracy_by_argmax"]["logits"].get<double>() << " (this run counts " << m["accuracy_argmax"].get<std::string>() << ")"
      << "\n\nconfusion matrix (rows: true label, columns: predicted)\n";
  for (const auto& row : m["confusion_matrix"]) {
    for (const auto& v : row) out << std::setw(6) << v.get<int64_t>();
    out << "\n";
  }
  out << "\n" << std::left << std::setw(14) << "class" << std::right << std::setw(10) << "precision" << std::setw(10)
      << "recall" << std::setw(10) << "f1" << std::setw(10) << "support\n";
  for (const auto& c : m["per_class"])
    out << std::left << std::setw(14) << c["class"].get<std::string>() << std::right << std::setw(10)
        << c["precision"].get<double>() << std::setw(10) << c["recall"].get<double>() << std::setw(10)
        << c["f1"].get<double>() << std::setw(9) << c["support"].get<int64_t>() << "\n";
  out.unsetf(std::ios::fixed);
}

// --out: metrics.json (metrics_train.json for the training split) and the confusion heatmaps.
void write_evaluation(const std::string& out, const std::string& split, const nlohmann::json& m, const Evaluation& e,
                      const std::vector<std::string>& classes) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw std::runtime_error("--out " + out + ": cannot create the directory (" + ec.message() + ")");
  write_file_atomic(fs::path(out) / (split == "test" ? "metrics.json" : "metrics_train.json"), m.dump(2) + "\n");
  if (split != "test") return;
#ifdef MNIST_WITH_OPENCV
  save_confusion_figures(out, e, classes);
#else
  (void)e, (void)classes;
  figures_skipped("confusion-matrix figures");
#endif
}

// --out may be a new folder or an earlier evaluation's, not a training run's: its metrics.json is
// the run's record (with its timings and epochs), which an evaluation must not replace.
void check_evaluation_out(const std::string& out) {
  if (out.empty()) return;
  std::error_code ec;
  if (fs::exists(fs::path(out) / "checkpoint.pt", ec))
    throw UsageError("--out " + out + ": that is a training run's directory, whose metrics.json is the run's own record; choose another directory");
  if (fs::exists(fs::symlink_status(out, ec)) && !fs::is_directory(fs::symlink_status(out, ec)))
    throw UsageError("--out " + out + ": exists and is not a directory; choose a folder to write the evaluation into");
}

int run_evaluate(const EvaluateFlags& f) {
  check_evaluation_out(f.out);
  if (!f.predictions.empty()) check_output_file(f.predictions, "--predictions", {f.model});
  LoadedModel loaded = load_model(f.model);
  const Split data = load_checked_split(data_dir_of(f.data, loaded.config), f.split == "train", loaded.config);
  const Evaluation e = evaluate(loaded.model, data, loaded.config.training);
  const auto classes = class_names(loaded.config.dataset);
  nlohmann::json m = metrics_json(e, classes, f.split);
  m["accuracy_argmax"] = name_of(loaded.config.training.accuracy_argmax);
  m["accuracy_by_argmax"] = {{"outputs", e.outputs_accuracy}, {"logits", e.logits_accuracy}};
  if (!f.predictions.empty()) write_predictions(f.predictions, split_outputs(loaded.model, data, loaded.config.training), data.labels);
  if (!f.out.empty()) write_evaluation(f.out, f.split, m, e, classes);
  if (f.json)
    std::cout << m.dump(2) << "\n";
  else
    print_evaluation(std::cout, m, f.split);
  return 0;
}

}  // namespace

Command add_evaluate_command(CLI::App& app) {
  auto f = std::make_shared<EvaluateFlags>();
  CLI::App* cmd = app.add_subcommand("evaluate", "evaluate a model on the test (or training) set");
  cmd->add_option("--split", f->split, "test, or train for all 60000 training images (keys become train_*)")
      ->check(CLI::IsMember({"test", "train"}))->capture_default_str();
  cmd->add_option("--model", f->model, "model.pt, checkpoint.pt or a run directory")->required();
  add_data_option(*cmd, f->data);
  cmd->add_flag("--json", f->json, "print metrics.json's keys as JSON");
  cmd->add_option("--out", f->out, "also write metrics.json and the confusion-matrix heatmaps into this directory");
  cmd->add_option("--predictions", f->predictions, "also write a CSV row per image: index, label, predicted, every output");
  return {cmd, [f] { return run_evaluate(*f); }};
}

}  // namespace mnist
