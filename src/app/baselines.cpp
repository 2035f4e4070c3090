// baselines: k-NN, logistic regression, RBF SVM and random forest, each timed for fit and predict.
#include "app/baselines.h"

#include <algorithm>
#include <chrono>

#ifdef MNIST_WITH_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/ml.hpp>
#endif

#include "config/errors.h"
#include "model/model.h"
#include "train/clock.h"
#include "train/train.h"

namespace mnist {
namespace {


Split first(const Split& s, int64_t n) {
  n = std::min(n, s.size());
  return {s.images.narrow(0, 0, n), s.labels.narrow(0, 0, n), /*checksum=*/""};
}

double accuracy_of(const torch::Tensor& predicted, const torch::Tensor& labels) {
  return predicted.to(torch::kLong).eq(labels).to(torch::kDouble).mean().item<double>();
}

// k-NN with L2 distance; votes are ties broken towards the nearer neighbours.
BaselineResult knn(const Split& train, const Split& test, int64_t k) {
  BaselineResult r{"k-NN (k=" + std::to_string(k) + ", L2)", 0, 0, 0, train.size()};
  auto t0 = Clock::now();
  const torch::Tensor x = train.images.flatten(1);
  const torch::Tensor x_norms = x.pow(2).sum(1);
  r.fit_seconds = seconds_since(t0);
  t0 = Clock::now();
  const torch::Tensor rank_weight = torch::linspace(1e-3, 1e-3 / static_cast<double>(k), k, torch::kFloat);
  std::vector<torch::Tensor> predictions;
  for (int64_t start = 0; start < test.size(); start += 1000) {
    const torch::Tensor q = test.images.narrow(0, start, std::min<int64_t>(1000, test.size() - start)).flatten(1);
    // |q - x|^2 = |q|^2 - 2 q.x + |x|^2; |q|^2 does not change the ranking.
    const torch::Tensor d = torch::addmm(x_norms.unsqueeze(0), q, x.t(), 1.0, -2.0);
    const torch::Tensor nearest = std::get<1>(d.topk(k, 1, /*largest=*/false, /*sorted=*/true));
    const torch::Tensor labels = train.labels.index_select(0, nearest.flatten()).view(nearest.sizes());
    const torch::Tensor votes = torch::zeros({q.size(0), 10}).scatter_add_(1, labels, (1 + rank_weight).expand({q.size(0), k}).contiguous());
    predictions.push_back(votes.argmax(1));
  }
  r.accuracy = accuracy_of(torch::cat(predictions), test.labels);
  r.predict_seconds = seconds_since(t0);
  return r;
}

// Multinomial logistic regression is Flatten -> Dense(10, softmax) under cross-entropy: fitted by
// our trainer with Adam (no regularisation), 10 epochs of batch 128.
BaselineResult logistic(const Split& train, const Split& test, uint64_t seed) {
  BaselineResult r{"logistic regression (multinomial, Adam)", 0, 0, 0, train.size()};
  ModelConfig model_config;
  model_config.layers = {{"flatten", FlattenSpec{}}, {"dense", DenseSpec{10, Activation::softmax, true}}};
  TrainingConfig training;
  training.epochs = 10;
  training.batch_size = 128;
  training.seed = seed;
  Model model(model_config, kImageShape, seed);
  Trainer trainer(model, training, torch::kCPU);
  auto t0 = Clock::now();
  trainer.fit(train, Split{}, first(test, 1), FitOptions{});
  r.fit_seconds = seconds_since(t0);
  t0 = Clock::now();
  torch::NoGradGuard no_grad;
  model->eval();
  r.accuracy = accuracy_of(model->logits(test.images).argmax(1), test.labels);
  r.predict_seconds = seconds_since(t0);
  return r;
}

#ifdef MNIST_WITH_OPENCV
cv::Mat features(const Split& s) {
  const torch::Tensor x = s.images.flatten(1).contiguous();
  return cv::Mat(static_cast<int>(x.size(0)), static_cast<int>(x.size(1)), CV_32F, x.data_ptr<float>()).clone();
}
cv::Mat responses(const Split& s) {
  const torch::Tensor y = s.labels.to(torch::kInt).contiguous();
  return cv::Mat(static_cast<int>(y.size(0)), 1, CV_32S, y.data_ptr<int>()).clone();
}

BaselineResult opencv_model(const std::string& method, const cv::Ptr<cv::ml::StatModel>& model, const Split& train,
                            const Split& test) {
  BaselineResult r{method, 0, 0, 0, train.size()};
  auto t0 = Clock::now();
  model->train(cv::ml::TrainData::create(features(train), cv::ml::ROW_SAMPLE, responses(train)));
  r.fit_seconds = seconds_since(t0);
  t0 = Clock::now();
  cv::Mat predicted;
  model->predict(features(test), predicted);
  r.predict_seconds = seconds_since(t0);
  r.accuracy = accuracy_of(torch::from_blob(predicted.ptr<float>(), {predicted.rows}, torch::kFloat).clone(), test.labels);
  return r;
}

// C-SVC with an RBF kernel; gamma is scikit-learn's "scale", 1 / (784 * pixel variance).
BaselineResult svm(const Split& train, const Split& test) {
  auto svm = cv::ml::SVM::create();
  svm->setType(cv::ml::SVM::C_SVC);
  svm->setKernel(cv::ml::SVM::RBF);
  svm->setC(10);
  const double variance = train.images.var().item<double>();
  svm->setGamma(1.0 / (784.0 * variance));
  char gamma[32];
  std::snprintf(gamma, sizeof gamma, "%.4f", 1.0 / (784.0 * variance));
  return opencv_model(std::string("RBF SVM (C=10, gamma=") + gamma + ")", svm, train, test);
}

// 100 trees, sqrt(784) = 28 features tried per split, as a random forest's usual defaults.
BaselineResult forest(const Split& train, const Split& test) {
  auto rf = cv::ml::RTrees::create();
  rf->setMaxDepth(25);
  rf->setMinSampleCount(2);
  rf->setActiveVarCount(28);
  rf->setCalculateVarImportance(false);
  rf->setTermCriteria(cv::TermCriteria(cv::TermCriteria::MAX_ITER, 100, 0));
  return opencv_model("random forest (100 trees)", rf, train, test);
}

#endif

}  // namespace

nlohmann::json BaselineResult::to_json() const {
  return {{"method", method},
          {"accuracy", accuracy},
          {"fit_seconds", fit_seconds},
          {"predict_seconds", predict_seconds},
          {"train_samples", train_samples}};
}

std::vector<BaselineResult> run_baselines(const Split& all_train, const Split& test, const BaselineOptions& options,
                                          std::ostream* log) {
  const Split train = options.samples > 0 ? first(all_train, options.samples) : all_train;
  const bool knn_chosen = std::find(options.methods.begin(), options.methods.end(), "knn") != options.methods.end();
  if (knn_chosen && train.size() < options.knn_k)
    throw UsageError("--samples " + std::to_string(train.size()) + ": k-NN votes among the " + std::to_string(options.knn_k) +
                     " nearest training images, so it needs at least " + std::to_string(options.knn_k) + " (or leave out --method knn)");
  std::vector<BaselineResult> results;
#ifdef MNIST_WITH_OPENCV
  cv::setRNGSeed(static_cast<int>(options.seed));
#endif
  for (const auto& m : options.methods) {
    if (std::find(kBaselineMethods.begin(), kBaselineMethods.end(), m) == kBaselineMethods.end())
      throw UsageError("baseline method " + m + " is not in this build (svm and forest need MNIST_WITH_OPENCV)");
    if (m == "knn") results.push_back(knn(train, test, options.knn_k));
    if (m == "logistic") results.push_back(logistic(train, test, options.seed));
#ifdef MNIST_WITH_OPENCV
    if (m == "svm") results.push_back(svm(options.svm_samples > 0 ? first(train, options.svm_samples) : train, test));
    if (m == "forest") results.push_back(forest(train, test));
#endif
    if (log && !results.empty()) {
      const auto& r = results.back();
      char line[256];
      std::snprintf(line, sizeof line, "%-40s %7.2f%%  fit %7.1f s  predict %6.1f s  on %lld samples\n", r.method.c_str(),
                    100 * r.accuracy, r.fit_seconds, r.predict_seconds, static_cast<long long>(r.train_samples));
      *log << line << std::flush;
    }
  }
  return results;
}

}  // namespace mnist
