// Classical baselines: every method learns an easy problem, honours its sample limit, and the
// CLI's --json is the documented list.
#include <gtest/gtest.h>

#include "app/baselines.h"
#include "config/errors.h"
#include "helpers.h"
#include "synthetic.h"

using namespace mnist;
using namespace testing_helpers;

TEST(Baselines, EveryMethodLearnsAnEasyProblemAndHonoursItsSampleLimit) {
  BaselineOptions options;
  options.samples = 300;  // of 400
  options.svm_samples = 200;
  std::ostringstream log;
  const auto results = run_baselines(class_blocks(400, 1, 0.2, 1.0), class_blocks(100, 2, 0.2, 1.0), options, &log);
  ASSERT_EQ(results.size(), kBaselineMethods.size());  // 4, or 2 without OpenCV (no svm, forest)
  for (const auto& r : results) {
    EXPECT_GE(r.accuracy, 0.95) << r.method;
    EXPECT_GE(r.fit_seconds, 0) << r.method;
    EXPECT_EQ(r.train_samples, r.method.rfind("RBF SVM", 0) == 0 ? 200 : 300) << r.method;
    EXPECT_NE(log.str().find(r.method), std::string::npos);
  }
  EXPECT_EQ(results[0].method, "k-NN (k=3, L2)");
  const auto j = results.back().to_json();
  for (const char* key : {"method", "accuracy", "fit_seconds", "predict_seconds", "train_samples"}) EXPECT_TRUE(j.contains(key)) << key;
}

// k-NN votes among k neighbours: fewer training images than k is a usage error, before any method runs.
TEST(Baselines, KnnOnFewerImagesThanItsKIsRefused) {
  BaselineOptions options;
  options.methods = {"logistic", "knn"};
  options.samples = 2;
  try {
    run_baselines(class_blocks(40, 1, 0.2, 1.0), class_blocks(10, 2, 0.2, 1.0), options, nullptr);
    ADD_FAILURE() << "k-NN on 2 images ran";
  } catch (const mnist::UsageError& e) {
    EXPECT_EQ(std::string(e.what()), "--samples 2: k-NN votes among the 3 nearest training images, so it needs at least 3 (or leave out --method knn)");
  }
  options.samples = 3;
  EXPECT_EQ(run_baselines(class_blocks(40, 1, 0.2, 1.0), class_blocks(10, 2, 0.2, 1.0), options, nullptr).size(), 2u);
}

#ifndef MNIST_WITH_OPENCV
TEST(Baselines, WithoutOpenCvTheOpenCvMethodsAreRefused) {
  BaselineOptions options;
  options.methods = {"svm"};
  EXPECT_THROW(run_baselines(class_blocks(40, 1, 0.2, 1.0), class_blocks(10, 2, 0.2, 1.0), options, nullptr), mnist::UsageError);
}
#endif

TEST(Baselines, CliJsonListsTheChosenMethods) {
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  // --samples keeps it quick: k-NN on all 60,000 images would compare each test image with every one.
  const CommandResult r = run_mnist("baselines --data " + tmp.path.string() + " --method knn --samples 500 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["method"], "k-NN (k=3, L2)");
  EXPECT_EQ(j[0]["train_samples"], 500);
  EXPECT_EQ(run_mnist("baselines --method boosting").exit_code, 2);
}
