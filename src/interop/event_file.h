// event_file: TensorBoard's event files, as TensorFlow's tf.summary writes them. Each file is a
// TFRecord stream of Event messages (tensorboard.proto): per record, its length (8 bytes, little
// endian), the length's masked CRC-32C, the serialised Event and its masked CRC-32C. The first
// event names the format ("brain.Event:2"); every later one carries one summary value at a step.
// Compiled apart from LibTorch, whose headers carry another protobuf's (src/interop/CMakeLists.txt).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace mnist {

// CRC-32C (Castagnoli), as TFRecord checks records with it, and its masked form.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

// One event file: events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2, new in `dir` (created if
// missing). Each call appends one event and flushes it, so TensorBoard shows a run while it trains.
// A write that fails (a full disk) throws naming the file.
class EventFile {
 public:
  explicit EventFile(const std::filesystem::path& dir);
  ~EventFile();
  EventFile(const EventFile&) = delete;
  EventFile& operator=(const EventFile&) = delete;

  void scalar(const std::string& tag, int64_t step, float value);
  // Markdown, shown by TensorBoard's text dashboard.
  void text(const std::string& tag, int64_t step, const std::string& markdown);
  void image(const std::string& tag, int64_t step, const std::string& png, int height, int width, int channels);
  // The values' distribution in `kHistogramBuckets` equal buckets between their min and max.
  void histogram(const std::string& tag, int64_t step, const std::vector<double>& values);
  // The run's hyper-parameters (the hparams dashboard): the session's start, and its end.
  using HParam = std::variant<double, std::string, bool>;
  void hparams_start(const std::map<std::string, HParam>& hparams, const std::string& group, double start_seconds);
  void hparams_end(bool success, double end_seconds);

  const std::filesystem::path& path() const { return path_; }
  static constexpr int kHistogramBuckets = 30;

 private:
  void write(const std::string& event);  // one serialised Event, framed as a TFRecord
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace mnist
