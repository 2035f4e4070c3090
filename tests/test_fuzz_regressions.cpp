// Replays every fuzz seed and every saved fuzzer crash (tests/fuzz/{corpus,regressions}/<target>/)
// through the code the fuzzers drive, in the normal build: each must end in our own error types,
// never a crash.
#include <gtest/gtest.h>

#include "config/config.h"
#include "config/errors.h"
#include "data/idx.h"
#include "helpers.h"
#include "interop/keras_import.h"

using namespace testing_helpers;

namespace {
std::vector<fs::path> inputs(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path("tests/fuzz") / kind / target;
    if (fs::is_directory(dir))
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file()) files.push_back(e.path());
  }
  return files;
}
}  // namespace

TEST(FuzzRegressions, IdxInputs) {
  const auto files = inputs("idx");
  EXPECT_GE(files.size(), 4u);
  for (const auto& f : files) {
    const std::string bytes = slurp(f);
    const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
    for (bool images : {true, false}) {
      try {
        const uint32_t count = mnist::check_idx_header(data, bytes.size(), bytes.size(), images, 5);
        if (!images) mnist::check_label_values(data + 8, count);
      } catch (const std::runtime_error&) {
      }
    }
  }
}

TEST(FuzzRegressions, ConfigInputs) {
  const auto files = inputs("config");
  EXPECT_GE(files.size(), 5u);
  for (const auto& f : files) {
    const std::string text = slurp(f);
    const auto split = text.find("\n--set ");
    try {
      const mnist::Config c = mnist::parse_config_text(text.substr(0, split), f.string());
      if (split != std::string::npos) mnist::apply_overrides(c, {text.substr(split + 7)});
    } catch (const mnist::UsageError&) {
    }
  }
}

TEST(FuzzRegressions, KerasInputs) {
  const mnist::Config config = mnist::parse_config_text(
      R"({"model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "relu"},
                              {"type": "Dense", "units": 10, "activation": "softmax", "use_bias": false}]}})", "t");
  const auto files = inputs("keras");
  EXPECT_GE(files.size(), 3u);
  int valid = 0;
  for (const auto& f : files) {
    try {
      mnist::parse_keras_weights(slurp(f), config, f.string());
      ++valid;
    } catch (const std::runtime_error&) {
    }
  }
  EXPECT_GE(valid, 1);  // the valid seed parses
  // Deep nesting is refused, not a stack overflow.
  EXPECT_THROW(mnist::parse_keras_weights(std::string(100000, '[') + std::string(100000, ']'), config, "deep"), std::runtime_error);
}

TEST(FuzzRegressions, KerasFileInputs) {
#ifndef MNIST_WITH_KERAS_FILES
  GTEST_SKIP() << "built with -DMNIST_WITH_KERAS_FILES=OFF: no HDF5/libzip";
#endif
  const mnist::Config config = mnist::read_keras_model("tests/data/keras/tiny-cnn.keras").config;  // the fuzzer's model
  const auto files = inputs("keras_files");
  EXPECT_GE(files.size(), 2u);
  for (const auto& f : files) {
    const std::string bytes = slurp(f);
    try {
      mnist::parse_keras_model(bytes, f.string());
    } catch (const std::runtime_error&) {
    }
    try {
      mnist::parse_keras_weights_h5(bytes, config, f.string());
    } catch (const std::runtime_error&) {
    }
  }
}
