// event_file: Event messages (tensorboard.proto) in TFRecord framing; see event_file.h.
#include "interop/event_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "interop/tensorboard.pb.h"  // protoc's, from tensorboard.proto

namespace mnist {
namespace {

namespace tb = mnist::tensorboard;

constexpr uint32_t kCastagnoli = 0x82F63B78;  // CRC-32C's polynomial, bit-reversed
constexpr uint32_t kMaskDelta = 0xA282EAD8;   // TFRecord's mask: rotate right by 15, add this
constexpr int kDtString = 7;                  // TensorFlow's DT_STRING

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCastagnoli : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An event at `step` holding one summary value, which `fill` sets (tag first).
template <class Fill>
std::string summary_event(const std::string& tag, int64_t step, Fill fill) {
  tb::Event event;
  event.set_wall_time(now_seconds());
  event.set_step(step);
  tb::Summary::Value* value = event.mutable_summary()->add_value();
  value->set_tag(tag);
  fill(*value);
  return event.SerializeAsString();
}

std::string hparams_event(const std::string& tag, const tb::HParamsPluginData& data) {
  return summary_event(tag, 0, [&](tb::Summary::Value& v) {
    v.mutable_metadata()->mutable_plugin_data()->set_plugin_name("hparams");
    v.mutable_metadata()->mutable_plugin_data()->set_content(data.SerializeAsString());
    v.mutable_tensor()->set_dtype(kDtString);  // TensorBoard reads the metadata; the value is empty
  });
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto& table = crc_table();
  const auto* bytes = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFF;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ bytes[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFF;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + kMaskDelta;
}

EventFile::EventFile(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  const auto seconds = static_cast<int64_t>(now_seconds());
  for (int n = 0; fd_ < 0 && n < 1000; ++n) {  // O_EXCL: a new file, never another writer's
    path_ = dir / ("events.out.tfevents." + std::to_string(seconds) + "." + host + "." + std::to_string(::getpid()) + "." +
                   std::to_string(n) + ".v2");
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) throw std::runtime_error("cannot create a TensorBoard event file in " + dir.string() + ": " + std::strerror(errno));
  tb::Event first;
  first.set_wall_time(now_seconds());
  first.set_file_version("brain.Event:2");
  write(first.SerializeAsString());
}

EventFile::~EventFile() {
  if (fd_ >= 0) ::close(fd_);
}

void EventFile::write(const std::string& event) {
  std::string record(8 + 4 + event.size() + 4, '\0');
  const uint64_t length = event.size();
  for (int i = 0; i < 8; ++i) record[i] = static_cast<char>(length >> (8 * i));  // little endian
  const uint32_t length_crc = masked_crc32c(record.data(), 8), data_crc = masked_crc32c(event.data(), event.size());
  for (int i = 0; i < 4; ++i) record[8 + i] = static_cast<char>(length_crc >> (8 * i));
  std::memcpy(&record[12], event.data(), event.size());
  for (int i = 0; i < 4; ++i) record[12 + event.size() + i] = static_cast<char>(data_crc >> (8 * i));
  for (size_t done = 0; done < record.size();) {
    const ssize_t n = ::write(fd_, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("cannot write " + path_.string() + ": disk full or not writable");
    done += static_cast<size_t>(n);
  }
}

void EventFile::scalar(const std::string& tag, int64_t step, float value) {
  write(summary_event(tag, step, [&](tb::Summary::Value& v) { v.set_simple_value(value); }));
}

void EventFile::text(const std::string& tag, int64_t step, const std::string& markdown) {
  write(summary_event(tag, step, [&](tb::Summary::Value& v) {
    v.mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
    v.mutable_tensor()->set_dtype(kDtString);
    v.mutable_tensor()->add_string_val(markdown);
  }));
}

void EventFile::image(const std::string& tag, int64_t step, const std::string& png, int height, int width, int channels) {
  write(summary_event(tag, step, [&](tb::Summary::Value& v) {
    tb::Summary::Image* image = v.mutable_image();
    image->set_height(height);
    image->set_width(width);
    image->set_colorspace(channels);
    image->set_encoded_image_string(png);
  }));
}

void EventFile::histogram(const std::string& tag, int64_t step, const std::vector<double>& values) {
  if (values.empty()) return;
  const auto [min, max] = std::minmax_element(values.begin(), values.end());
  const double lo = *min, hi = *max;
  // Equal buckets over [lo, hi], each holding the values up to its limit; all values equal: one bucket.
  const int buckets = hi > lo ? kHistogramBuckets : 1;
  std::vector<double> counts(static_cast<size_t>(buckets), 0.0);
  double sum = 0, sum_squares = 0;
  for (const double x : values) {
    const int b = buckets == 1 ? 0 : static_cast<int>(std::ceil((x - lo) / (hi - lo) * buckets)) - 1;  // (limit[b-1], limit[b]]
    counts[static_cast<size_t>(std::clamp(b, 0, buckets - 1))] += 1;
    sum += x;
    sum_squares += x * x;
  }
  write(summary_event(tag, step, [&](tb::Summary::Value& v) {
    tb::HistogramProto* h = v.mutable_histo();
    h->set_min(lo);
    h->set_max(hi);
    h->set_num(static_cast<double>(values.size()));
    h->set_sum(sum);
    h->set_sum_squares(sum_squares);
    for (int b = 0; b < buckets; ++b) {
      h->add_bucket_limit(b + 1 == buckets ? hi : lo + (hi - lo) * (b + 1) / buckets);
      h->add_bucket(counts[static_cast<size_t>(b)]);
    }
  }));
}

void EventFile::hparams_start(const std::map<std::string, HParam>& hparams, const std::string& group, double start_seconds) {
  tb::HParamsPluginData data;
  data.set_version(0);
  tb::SessionStartInfo* start = data.mutable_session_start_info();
  for (const auto& [name, value] : hparams) {
    tb::HParamValue& v = (*start->mutable_hparams())[name];
    if (const auto* d = std::get_if<double>(&value)) v.set_number_value(*d);
    if (const auto* s = std::get_if<std::string>(&value)) v.set_string_value(*s);
    if (const auto* b = std::get_if<bool>(&value)) v.set_bool_value(*b);
  }
  start->set_group_name(group);
  start->set_start_time_secs(start_seconds);
  write(hparams_event("_hparams_/session_start_info", data));
}

void EventFile::hparams_end(bool success, double end_seconds) {
  tb::HParamsPluginData data;
  data.set_version(0);
  data.mutable_session_end_info()->set_status(success ? 1 : 2);
  data.mutable_session_end_info()->set_end_time_secs(end_seconds);
  write(hparams_event("_hparams_/session_end_info", data));
}

}  // namespace mnist
