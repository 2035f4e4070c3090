// data: MNIST-format IDX files -> tensors resident on the training device, and a data order given
// from outside (to replay another program's batches). Files are checked
// before LibTorch's built-in loader (torch::data::datasets::MNIST) reads them, because that loader
// aborts with a c10 trace on a missing file and silently reads garbage from a truncated one.
#pragma once
#include <optional>
#include <string>
#include <utility>

#include <torch/torch.h>

#include "config/config.h"

namespace mnist {

// The four file names torch::data::datasets::MNIST expects (each may also be present as NAME.gz).
inline constexpr const char* kTrainImages = "train-images-idx3-ubyte";
inline constexpr const char* kTrainLabels = "train-labels-idx1-ubyte";
inline constexpr const char* kTestImages = "t10k-images-idx3-ubyte";
inline constexpr const char* kTestLabels = "t10k-labels-idx1-ubyte";

struct Split {
  torch::Tensor images;  // float32 [N, 1, 28, 28], pixel / 255 (the paper's normalisation)
  torch::Tensor labels;  // int64 [N]
  std::string checksum;  // CRC-32 of the two IDX files as loaded (8 hex digits): which data this is
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  Split to(torch::Device device) const { return {images.to(device), labels.to(device), checksum}; }
};

// The dataset whose published split `split` is (by its checksum); none for other data in the same
// format. check_dataset throws UsageError when it is the other of the two datasets than `dataset`,
// naming `data_dir` and the fix: a model is never trained or scored on the wrong one.
std::optional<Dataset> identify_dataset(const Split& split, bool train);
void check_dataset(const Split& split, bool train, Dataset dataset, const std::string& data_dir);

// Throws std::runtime_error naming the file and the fix when `dir` does not hold a valid pair of
// IDX files for the split (missing, truncated, wrong magic, wrong count, labels out of 0..9).
void check_split_files(const std::string& dir, bool train);

// Validates, then loads with torch::data::datasets::MNIST. Gzipped files (NAME.gz, as Debian's
// dataset-fashion-mnist ships them) are decompressed to a temporary directory first.
Split load_split(const std::string& dir, bool train);

// Keras's validation_split: the LAST fraction of the arrays, taken before any shuffling
// (keras.utils.split_dataset / Model.fit: split_at = floor(n * (1 - validation_split))).
std::pair<Split, Split> split_validation(const Split& all, double validation_split);

// A data order given from outside instead of our shuffling: a JSON list with one list per epoch,
// each of the same length m (1..n), of distinct indices into the training split's n samples (after
// validation_split): a permutation of it, or an epoch of m chosen samples. Batches are taken in
// list order; scripts/keras_reference.py --data-order reads the same file. Returns int64
// [epochs, m] (the file may order more epochs than are run). Throws std::runtime_error naming the
// file and the epoch when the file holds fewer epochs or a list breaks these rules.
torch::Tensor read_data_order(const std::string& file, int64_t epochs, int64_t n);

}  // namespace mnist
