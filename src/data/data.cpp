// data: IDX validation, gzip handling, the built-in MNIST loader, and Keras's validation split.
#include "data/data.h"

#include "config/errors.h"
#include "config/user_input.h"
#include "data/idx.h"

#include <zlib.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

namespace mnist {
namespace fs = std::filesystem;
namespace {

constexpr uint32_t kTrainCount = 60000, kTestCount = 10000;  // the built-in loader accepts only these

const std::string kFix = "; run scripts/fetch-data.sh, or pass --data DIR holding the four MNIST IDX files";

std::runtime_error data_error(const fs::path& file, const std::string& problem, const std::string& fix = kFix) {
  return std::runtime_error("data file " + file.string() + " " + problem + fix);
}

std::vector<unsigned char> read_prefix(const fs::path& file, size_t n) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw data_error(file, "cannot be opened");
  std::vector<unsigned char> buf(n);
  in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n));
  buf.resize(static_cast<size_t>(in.gcount()));
  return buf;
}

// Checks one IDX file with the rules in idx.h; returns its item count. Errors name `shown`, the
// file the user has (NAME.gz when `file` is our inflated copy of it).
uint32_t check_idx(const fs::path& file, const fs::path& shown, bool images, uint32_t expected_count) {
  if (!fs::exists(file)) throw data_error(shown, "is missing");
  if (!fs::is_regular_file(file)) throw data_error(shown, "is not a regular file");
  const auto head = read_prefix(file, 16);
  try {
    return check_idx_header(head.data(), head.size(), fs::file_size(file), images, expected_count);
  } catch (const std::runtime_error& e) {
    throw data_error(shown, e.what());
  }
}

void check_labels_in_range(const fs::path& file, const fs::path& shown, uint32_t count) {
  const auto bytes = read_prefix(file, 8 + size_t(count));
  try {
    check_label_values(bytes.data() + 8, bytes.size() - 8);
  } catch (const std::runtime_error& e) {
    throw data_error(shown, e.what());
  }
}

// A directory holding plain IDX files for `dir`: `dir` itself, or a temporary copy with any NAME.gz
// inflated to NAME. The temporary directory is removed when this object goes away.
class PlainFiles {
 public:
  PlainFiles(const fs::path& dir, const std::array<const char*, 2>& names) : dir_(dir) {
    try {
      inflate(names);
    } catch (...) {
      remove_temporary();  // a throwing constructor gets no destructor call
      throw;
    }
  }
  ~PlainFiles() { remove_temporary(); }
  PlainFiles(const PlainFiles&) = delete;
  PlainFiles& operator=(const PlainFiles&) = delete;
  fs::path dir() const { return tmp_.empty() ? dir_ : tmp_; }
  // Error messages name the file the user has, not our temporary copy.
  fs::path user_path(const char* name) const {
    return (tmp_.empty() || fs::is_symlink(tmp_ / name)) ? dir_ / name : dir_ / (std::string(name) + ".gz");
  }

 private:
  void inflate(const std::array<const char*, 2>& names) {
    for (const char* name : names) {
      if (fs::exists(dir_ / name) || !fs::exists(dir_ / (std::string(name) + ".gz"))) continue;
      if (tmp_.empty()) {
        std::string pattern = (fs::temp_directory_path() / "mnist-gunzip-XXXXXX").string();
        if (!mkdtemp(pattern.data())) throw std::runtime_error("cannot create a temporary directory in " + fs::temp_directory_path().string());
        tmp_ = pattern;
      }
      gunzip(dir_ / (std::string(name) + ".gz"), tmp_ / name);
    }
    // Plain files that were already there sit beside the inflated ones.
    if (!tmp_.empty())
      for (const char* name : names)
        if (fs::exists(dir_ / name)) fs::create_symlink(fs::absolute(dir_ / name), tmp_ / name);
  }
  void remove_temporary() {
    std::error_code ec;
    if (!tmp_.empty()) fs::remove_all(tmp_, ec);
  }
  static void gunzip(const fs::path& from, const fs::path& to) {
    gzFile in = gzopen(from.c_str(), "rb");
    if (!in) throw data_error(from, "cannot be opened");
    std::ofstream out(to, std::ios::binary);
    std::vector<char> buf(1 << 16);
    int n = 0;
    while ((n = gzread(in, buf.data(), static_cast<unsigned>(buf.size()))) > 0) out.write(buf.data(), n);
    int err = Z_OK;
    const std::string msg = n < 0 ? gzerror(in, &err) : "";  // copied: gzclose frees it
    gzclose(in);
    if (n < 0) throw data_error(from, "is not a valid gzip file (" + msg + ")");
    if (!out) throw std::runtime_error("cannot write " + to.string() + ": is the temporary directory full?");
  }
  fs::path dir_, tmp_;
};

std::array<const char*, 2> split_names(bool train) {
  return train ? std::array<const char*, 2>{kTrainImages, kTrainLabels} : std::array<const char*, 2>{kTestImages, kTestLabels};
}

void check_plain(const PlainFiles& files, bool train) {
  const auto [images, labels] = split_names(train);
  const uint32_t expected = train ? kTrainCount : kTestCount;
  check_idx(files.dir() / images, files.user_path(images), true, expected);
  const uint32_t count = check_idx(files.dir() / labels, files.user_path(labels), false, expected);
  check_labels_in_range(files.dir() / labels, files.user_path(labels), count);
}

// CRC-32 of the files, one after the other, as 8 hex digits.
std::string files_checksum(const std::vector<fs::path>& files) {
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<char> buf(1 << 20);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
      crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(in.gcount()));
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return hex;
}

// The published splits, by the CRC-32 of their uncompressed IDX files (images, then labels).
struct KnownSplit {
  Dataset dataset;
  bool train;
  const char* checksum;
};
constexpr KnownSplit kKnownSplits[] = {{Dataset::mnist, true, "2705307c"},
                                       {Dataset::mnist, false, "481227ec"},
                                       {Dataset::fashion_mnist, true, "c5355358"},
                                       {Dataset::fashion_mnist, false, "137d213c"}};

fs::path require_dir(const std::string& dir) {
  if (!fs::is_directory(dir))
    throw std::runtime_error("data directory " + dir + " does not exist" + kFix);
  return fs::path(dir);
}

}  // namespace

void check_split_files(const std::string& dir, bool train) {
  PlainFiles files(require_dir(dir), split_names(train));
  check_plain(files, train);
}

Split load_split(const std::string& dir, bool train) {
  PlainFiles files(require_dir(dir), split_names(train));
  check_plain(files, train);
  using torch::data::datasets::MNIST;
  MNIST mnist(files.dir().string(), train ? MNIST::Mode::kTrain : MNIST::Mode::kTest);
  const auto [images, labels] = split_names(train);
  // The loader already returns float32 pixel / 255 in [1, 28, 28] per image, the paper's x / 255.
  return {mnist.images(), mnist.targets().to(torch::kLong), files_checksum({files.dir() / images, files.dir() / labels})};
}

std::optional<Dataset> identify_dataset(const Split& split, bool train) {
  for (const auto& known : kKnownSplits)
    if (known.train == train && split.checksum == known.checksum) return known.dataset;
  return std::nullopt;
}

void check_dataset(const Split& split, bool train, Dataset expected, const std::string& data_dir) {
  const std::optional<Dataset> held = identify_dataset(split, train);
  if (!held || *held == expected) return;
  const std::string shown = *held == Dataset::mnist ? "MNIST" : "Fashion-MNIST";
  const std::string dataset = name_of(expected), found = name_of(*held);
  throw UsageError("data directory " + data_dir + " holds " + shown + ", but the model's config is for " + dataset +
                   ": pass --data with " + dataset + "'s files (default: data/" + dataset + "), or a config for " + found);
}

std::pair<Split, Split> split_validation(const Split& all, double validation_split) {
  if (validation_split <= 0) return {all, Split{}};
  const int64_t n = all.size();
  const auto split_at = static_cast<int64_t>(std::floor(static_cast<double>(n) * (1.0 - validation_split)));
  if (split_at <= 0 || split_at >= n)
    throw UsageError("config error at training.validation_split: " + std::to_string(validation_split) + " leaves " +
                             std::to_string(split_at) + " of " + std::to_string(n) + " samples for training; choose a value that keeps both parts non-empty");
  return {Split{all.images.narrow(0, 0, split_at), all.labels.narrow(0, 0, split_at), /*checksum=*/""},
          Split{all.images.narrow(0, split_at, n - split_at), all.labels.narrow(0, split_at, n - split_at), /*checksum=*/""}};
}

namespace {

struct OrderListTooLong {
  int64_t list;  // from 1
};

// A data order's JSON, keeping only what the run reads: the lists of its `epochs` epochs, each of
// at most `n` entries (one list longer is refused as it is read); the lists after them are parsed
// and dropped. So the document in memory follows the run (16-32 bytes an index), never the file's
// size, and nesting deeper than a list of lists is refused before it is built.
nlohmann::json parse_order_lists(const std::string& text, int64_t epochs, int64_t n) {
  using Event = nlohmann::json::parse_event_t;
  int64_t lists = 0, in_list = 0;  // lists begun, and the entries of the last one
  return nlohmann::json::parse(text, [&](int depth, Event event, nlohmann::json&) {
    if (depth > 2) throw JsonTooDeep("nested deeper than a list of lists");
    if (depth == 1 && event == Event::array_start) ++lists, in_list = 0;
    const bool kept = lists <= epochs;
    if (depth == 2 && kept && event != Event::array_end && event != Event::object_end && ++in_list > n) throw OrderListTooLong{lists};
    return kept || depth == 0;
  });
}

// Epoch e's list into `row` ([m]: epoch 1's length): m distinct indices in 0..n-1. `where` names
// the list in messages, `expected` says what a data order is.
void read_epoch_list(const nlohmann::json& list, const std::string& where, const std::string& expected, int64_t e, int64_t n,
                     torch::Tensor row) {
  const int64_t m = row.size(0);
  if (!list.is_array()) throw std::runtime_error(where + " is not a list" + expected);
  if (list.empty() || static_cast<int64_t>(list.size()) > n || static_cast<int64_t>(list.size()) != m)
    throw std::runtime_error(where + " has " + std::to_string(list.size()) + " indices" +
                             (e > 0 ? " where epoch 1's has " + std::to_string(m) : std::string()) + expected);
  std::vector<char> seen(static_cast<size_t>(n), 0);
  int64_t* out = row.data_ptr<int64_t>();
  for (int64_t i = 0; i < m; ++i) {
    const nlohmann::json& v = list[static_cast<size_t>(i)];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= n)
      throw std::runtime_error(where + " has " + (v.is_number() ? v.dump() : std::string("a ") + v.type_name()) + " at position " + std::to_string(i) + expected);
    const int64_t index = v.get<int64_t>();
    if (seen[static_cast<size_t>(index)]++) throw std::runtime_error(where + " has index " + std::to_string(index) + " twice" + expected);
    out[i] = index;
  }
}

}  // namespace

torch::Tensor read_data_order(const std::string& file, int64_t epochs, int64_t n) {
  const std::string what = "--data-order " + file;
  const std::string expected = "; expected a JSON list with one list per epoch, all of one length, of distinct indices in 0.." +
                               std::to_string(n - 1) + " (the training split's " + std::to_string(n) + " samples)";
  std::string text;
  try {
    text = read_user_file(file, "--data-order", /*max_bytes=*/int64_t{1} << 30);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(e.what() + expected);
  }
  nlohmann::json j;
  try {
    j = parse_order_lists(text, epochs, n);
  } catch (const JsonTooDeep&) {
    throw std::runtime_error(what + " is nested deeper than a list of lists" + expected);
  } catch (const OrderListTooLong& e) {
    throw std::runtime_error(what + ": epoch " + std::to_string(e.list) + "'s list has more than " + std::to_string(n) + " indices" + expected);
  } catch (const nlohmann::json::exception&) {
    throw std::runtime_error(what + " is not valid JSON" + expected);
  }
  if (!j.is_array()) throw std::runtime_error(what + " is not a list" + expected);
  if (static_cast<int64_t>(j.size()) < epochs)
    throw std::runtime_error(what + " orders " + std::to_string(j.size()) + " epochs; the run trains " + std::to_string(epochs) +
                             " (give one list per epoch, or set training.epochs)");
  const int64_t m = epochs > 0 && j[0].is_array() ? static_cast<int64_t>(j[0].size()) : 0;
  torch::Tensor order = torch::empty({epochs, m}, torch::kLong);
  for (int64_t e = 0; e < epochs; ++e)
    read_epoch_list(j[static_cast<size_t>(e)], what + ": epoch " + std::to_string(e + 1) + "'s list", expected, e, n, order[e]);
  return order;
}

}  // namespace mnist
