// baselines: the classical methods the paper's abstract promises and never shows, on the same
// normalised pixels as the networks: k-nearest neighbours (LibTorch: the distances are one matrix
// product per chunk), multinomial logistic regression (our own trainer on Flatten -> Dense(10,
// softmax)), and OpenCV's ml module for an RBF-kernel SVM and a random forest. Methods too slow for
// all 60,000 samples on a small CPU train on the first `samples` of them unless `full` is set.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data.h"

namespace mnist {

struct BaselineResult {
  std::string method;
  double accuracy = 0, fit_seconds = 0, predict_seconds = 0;
  int64_t train_samples = 0;
  nlohmann::json to_json() const;
};

struct BaselineOptions {
  std::vector<std::string> methods = {"knn", "logistic", "svm", "forest"};
  bool full = false;             // every method on every training sample
  int64_t svm_samples = 10000;   // OpenCV's SVM trains by SMO: time grows ~ samples^2 (see README)
  int64_t knn_k = 3;
  uint64_t seed = 0;
};

inline const std::vector<std::string> kBaselineMethods = {"knn", "logistic", "svm", "forest"};

// Runs the chosen methods in order, logging a line per method to `log` (may be null).
std::vector<BaselineResult> run_baselines(const Split& train, const Split& test, const BaselineOptions& options,
                                          std::ostream* log);

}  // namespace mnist
