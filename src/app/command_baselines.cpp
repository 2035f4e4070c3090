// command_baselines: `mnist baselines`: k-NN, logistic regression, RBF SVM and random forest on
// the same pixels (baselines.h), as a table or a JSON list.
#include <iostream>

#include "app/baselines.h"
#include "app/command.h"

namespace mnist {
namespace {

struct BaselinesFlags {
  BaselineOptions options;
  std::string data = "data/mnist";
  int threads = 0;
  bool json = false;
};

int run_baselines_command(const BaselinesFlags& f) {
  apply_threads(f.threads);
  const Split train = load_split(f.data, true), test = load_split(f.data, false);
  const BaselineOptions& o = f.options;
  if (!f.json)
    std::cout << "Classical baselines on " << f.data << " (" << train.size() << " training, " << test.size()
              << " test images, pixels / 255)"
              << (o.samples > 0 ? "; every method trains on the first " + std::to_string(o.samples) : "")
              << (o.svm_samples > 0 ? "; the SVM trains on the first " + std::to_string(o.svm_samples) : "") << "\n";
  const auto results = run_baselines(train, test, o, f.json ? nullptr : &std::cout);
  if (f.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : results) out.push_back(r.to_json());
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

Command add_baselines_command(CLI::App& app) {
  auto f = std::make_shared<BaselinesFlags>();
  CLI::App* cmd = app.add_subcommand("baselines", "k-NN, logistic regression, RBF SVM and random forest on the same pixels");
  cmd->add_option("--data", f->data, "directory with the four IDX files (data/fashion-mnist for Fashion-MNIST)")->capture_default_str();
  cmd->add_option("--method", f->options.methods, "run only these (repeatable): knn, logistic, svm, forest")
      ->check(CLI::IsMember(kBaselineMethods));
  cmd->add_option("--samples", f->options.samples, "train every method on the first N images only (0: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{60000}))->capture_default_str();
  cmd->add_option("--svm-samples", f->options.svm_samples,
                  "train the SVM on the first N images only (0: all; its fit time grows with N squared)")
      ->check(CLI::Range(int64_t{0}, int64_t{60000}))->capture_default_str();
  add_threads_option(*cmd, f->threads, "LibTorch and OpenCV");
  cmd->add_flag("--json", f->json, "a JSON list of {method, accuracy, fit_seconds, predict_seconds, train_samples}");
  return {cmd, [f] { return run_baselines_command(*f); }};
}

}  // namespace mnist
