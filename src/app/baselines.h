// baselines: the classical methods the paper's abstract promises and never shows, on the same
// normalised pixels as the networks: k-nearest neighbours (LibTorch: the distances are one matrix
// product per chunk), multinomial logistic regression (our own trainer on Flatten -> Dense(10,
// softmax)), and OpenCV's ml module for an RBF-kernel SVM and a random forest. All use every
// training sample by default (the slowest, the forest, fits in about 1.5 minutes on 2 cores).
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/data.h"

namespace mnist {

struct BaselineResult {
  std::string method;
  double accuracy = 0, fit_seconds = 0, predict_seconds = 0;
  int64_t train_samples = 0;
  nlohmann::json to_json() const;
};

#ifdef MNIST_WITH_OPENCV
inline const std::vector<std::string> kBaselineMethods = {"knn", "logistic", "svm", "forest"};
#else
inline const std::vector<std::string> kBaselineMethods = {"knn", "logistic"};  // the SVM and the forest are OpenCV's
#endif

struct BaselineOptions {
  std::vector<std::string> methods = kBaselineMethods;
  int64_t samples = 0;  // 0: all; else every method trains on the first N training images
  // 0: all. OpenCV's SVM trains by SMO, time ~ samples^2: 8 s on 10,000 and 121 s on 60,000 here.
  int64_t svm_samples = 0;
  int64_t knn_k = 3;
  uint64_t seed = 0;
};

// Runs the chosen methods in order, logging a line per method to `log` (may be null).
std::vector<BaselineResult> run_baselines(const Split& train, const Split& test, const BaselineOptions& options,
                                          std::ostream* log);

}  // namespace mnist
