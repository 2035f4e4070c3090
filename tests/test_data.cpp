// IDX validation (one clear error per bad file), loading through the built-in loader, gzip input,
// and Keras's validation_split.
#include <gtest/gtest.h>

#include "data/data.h"
#include "helpers.h"

using namespace mnist;
using namespace testing_helpers;

namespace {

// The error message check_split_files gives for `dir`, or "" when the files are valid.
std::string check_error(const fs::path& dir, bool train) {
  try {
    check_split_files(dir.string(), train);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "expected \"" << part << "\" in \"" << text << "\"";
}

}  // namespace

TEST(Data, MissingDirectoryAndFilesAreNamed) {
  TempDir tmp;
  expect_contains(check_error(tmp / "nope", true), "data directory " + (tmp / "nope").string() + " does not exist");
  const std::string err = check_error(tmp.path, true);
  expect_contains(err, (tmp / "train-images-idx3-ubyte").string() + " is missing");
  expect_contains(err, "scripts/fetch-data.sh");
}

TEST(Data, BadFilesGiveOneClearLine) {
  TempDir tmp;
  const std::string images = (tmp / "t10k-images-idx3-ubyte").string(), labels = (tmp / "t10k-labels-idx1-ubyte").string();
  struct Case {
    std::string image_bytes, label_bytes, expected;
  } cases[] = {
      {idx_images(10000).substr(0, 5000), idx_labels(10000), images + " is truncated: 5000 bytes, expected 7840016"},
      {idx_images(10000).substr(0, 10), idx_labels(10000), images + " is truncated: 10 bytes, shorter than an IDX image file header"},
      {idx_images(10000, 28, 28, 0x1f8b0800), idx_labels(10000), images + " is not an IDX image file (magic number 0x1F8B0800"},
      {idx_images(10000, 32, 32), idx_labels(10000), images + " holds 32x32 images, expected 28x28"},
      {idx_images(10000), idx_labels(9000), labels + " holds 9000 items; the MNIST loader expects the 10000-item test set"},
      {idx_images(10000), idx_images(10000), labels + " is not an IDX label file"},
      {idx_images(10000) + "xx", idx_labels(10000), images + " has trailing bytes"},
      {idx_images(10000), idx_labels(10000).replace(8 + 17, 1, 1, char(42)), labels + " has label 42 at index 17"},
  };
  for (const auto& c : cases) {
    write_file(images, c.image_bytes);
    write_file(labels, c.label_bytes);
    const std::string err = check_error(tmp.path, false);
    expect_contains(err, c.expected);
    EXPECT_EQ(err.find('\n'), std::string::npos);
  }
  write_file(images, idx_images(10000));
  write_file(labels, idx_labels(10000));
  EXPECT_EQ(check_error(tmp.path, false), "");
}

TEST(Data, LoadsThroughTheBuiltInLoaderAsPixelsOver255) {
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const Split train = load_split(tmp.path.string(), true), test = load_split(tmp.path.string(), false);
  ASSERT_EQ(train.images.sizes(), (torch::IntArrayRef{60000, 1, 28, 28}));
  ASSERT_EQ(test.images.sizes(), (torch::IntArrayRef{10000, 1, 28, 28}));
  EXPECT_EQ(train.images.dtype(), torch::kFloat32);
  EXPECT_EQ(train.labels.dtype(), torch::kLong);
  for (uint32_t i : {0u, 1u, 12345u, 59999u}) {
    EXPECT_EQ(train.labels[i].item<int64_t>(), synthetic_label(i));
    const auto img = train.images[i].flatten();
    for (uint32_t p : {0u, 1u, 400u, 783u})
      EXPECT_EQ(img[p].item<float>(), static_cast<float>(synthetic_pixel(i, p)) / 255.0f) << i << "," << p;
  }
  EXPECT_GE(train.images.min().item<float>(), 0.0f);
  EXPECT_LE(train.images.max().item<float>(), 1.0f);
}

TEST(Data, AcceptsGzipFilesAndNamesTheGzipInErrors) {
  TempDir tmp;
  write_synthetic_mnist(tmp.path, /*gzip=*/true);
  const Split test = load_split(tmp.path.string(), false);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(test.labels[9999].item<int64_t>(), synthetic_label(9999));
  write_gzip(tmp / "t10k-labels-idx1-ubyte.gz", idx_labels(10));
  const std::string err = check_error(tmp.path, false);
  EXPECT_NE(err.find("t10k-labels-idx1-ubyte.gz holds 10 items"), std::string::npos) << err;
  write_file(tmp / "t10k-labels-idx1-ubyte.gz", "\x1f\x8b garbage");
  EXPECT_NE(check_error(tmp.path, false).find("t10k-labels-idx1-ubyte.gz"), std::string::npos);
}

TEST(Data, RealFashionMnistGzipFromDebian) {
  const fs::path dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir / "t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const Split test = load_split(dir.string(), false);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(test.labels.bincount().min().item<int64_t>(), 1000);  // 1000 test images per class
}

TEST(Data, ValidationSplitIsTheLastFractionBeforeShuffling) {
  const auto images = torch::arange(7, torch::kFloat32).view({7, 1, 1, 1});
  const Split all{images, torch::arange(7, torch::kLong)};
  // Keras: split_at = floor(7 * (1 - 0.3)) = floor(4.9) = 4.
  const auto [train, validation] = split_validation(all, 0.3);
  ASSERT_EQ(train.size(), 4);
  ASSERT_EQ(validation.size(), 3);
  EXPECT_TRUE(train.labels.equal(torch::arange(0, 4, torch::kLong)));
  EXPECT_TRUE(validation.labels.equal(torch::arange(4, 7, torch::kLong)));
  EXPECT_EQ(split_validation(all, 0.0).second.size(), 0);
  EXPECT_THROW(split_validation(all, 0.99), std::runtime_error);  // nothing left to train on
}

TEST(Data, RealMnistSplitSizes) {
  if (!fs::exists("data/mnist/train-images-idx3-ubyte")) GTEST_SKIP() << "data/mnist missing: run scripts/fetch-data.sh";
  const auto [train, validation] = split_validation(load_split("data/mnist", true), 0.1);
  EXPECT_EQ(train.size(), 54000);
  EXPECT_EQ(validation.size(), 6000);
}

TEST(Data, ADataOrderKeepsTheRunsEpochsAndRefusesAListLongerThanTheSplit) {
  TempDir tmp;
  write_file(tmp.path / "order.json", R"([[2, 0, 1], [1, 2, 0], [0, 1, 2]])");
  const torch::Tensor order = read_data_order((tmp.path / "order.json").string(), /*epochs=*/2, /*n=*/3);
  ASSERT_EQ(order.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(order[1][0].item<int64_t>(), 1);
  // A list one entry longer than the training split is refused when its entry n + 1 is read.
  write_file(tmp.path / "long.json", R"([[2, 0, 1], [0, 1, 2, 0]])");
  try {
    read_data_order((tmp.path / "long.json").string(), /*epochs=*/2, /*n=*/3);
    ADD_FAILURE() << "accepted a list of 4 indices into 3 samples";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("epoch 2's list has more than 3 indices"), std::string::npos) << e.what();
  }
  // The same list after the run's epochs is never read (a longer order serves a shorter run).
  EXPECT_EQ(read_data_order((tmp.path / "long.json").string(), /*epochs=*/1, /*n=*/3).size(0), 1);
}
