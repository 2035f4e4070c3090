// predict: MNIST-style preprocessing of image files.
#include "report/predict.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "config/user_input.h"
#include "data/idx.h"

namespace mnist {
namespace fs = std::filesystem;

cv::Mat prepare_digit(const cv::Mat& gray_in, const std::string& what) {
  if (gray_in.empty() || gray_in.rows < 1 || gray_in.cols < 1) throw std::runtime_error("image " + what + " is empty");
  cv::Mat gray = gray_in.clone();
  // The background is what the border mostly is: invert when it is light.
  std::vector<uchar> border;
  for (int x = 0; x < gray.cols; ++x) border.push_back(gray.at<uchar>(0, x)), border.push_back(gray.at<uchar>(gray.rows - 1, x));
  for (int y = 0; y < gray.rows; ++y) border.push_back(gray.at<uchar>(y, 0)), border.push_back(gray.at<uchar>(y, gray.cols - 1));
  std::nth_element(border.begin(), border.begin() + border.size() / 2, border.end());
  const int background = border[border.size() / 2];
  if (background > 127) cv::bitwise_not(gray, gray);
  // Uneven lighting (a photo of paper): estimate the background with a morphological opening wider
  // than any pen stroke and subtract it, so the shading is not taken for ink.
  const int k = std::max(3, std::min(gray.rows, gray.cols) / 3) | 1;
  cv::Mat lit, ink;
  cv::morphologyEx(gray, lit, cv::MORPH_OPEN, cv::getStructuringElement(cv::MORPH_RECT, {k, k}));
  cv::subtract(gray, lit, ink);
  double max_value = 0;
  cv::minMaxLoc(ink, nullptr, &max_value);
  if (max_value < 32) throw std::runtime_error("image " + what + " has no visible ink (a blank image?)");
  // MNIST's background is exactly 0: drop the faint residue of paper texture and sensor noise.
  cv::threshold(ink, ink, max_value * 0.15, 0, cv::THRESH_TOZERO);
  cv::Mat cleaned;
  cv::medianBlur(ink, cleaned, 3);  // isolated noisy pixels must not stretch the bounding box
  cv::Mat mask = cleaned > max_value * 0.25;
  const cv::Rect box = cv::boundingRect(mask);
  cv::Mat digit = ink(box);
  // Fit 20x20 keeping the aspect ratio (anti-aliased, as NIST's digits were).
  const double scale = 20.0 / std::max(box.width, box.height);
  const cv::Size fitted(std::max(1, static_cast<int>(std::lround(box.width * scale))),
                        std::max(1, static_cast<int>(std::lround(box.height * scale))));
  cv::Mat small;
  cv::resize(digit, small, fitted, 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  cv::normalize(small, small, 0, 255, cv::NORM_MINMAX);
  // Paste so that the centre of mass lands on the centre of the 28x28 field.
  const cv::Moments m = cv::moments(small, false);
  const double cx = m.m00 > 0 ? m.m10 / m.m00 : small.cols / 2.0, cy = m.m00 > 0 ? m.m01 / m.m00 : small.rows / 2.0;
  constexpr int rows = kImageRows, cols = kImageCols;
  const int ox = std::clamp(static_cast<int>(std::lround(cols / 2.0 - cx)), 0, cols - small.cols);
  const int oy = std::clamp(static_cast<int>(std::lround(rows / 2.0 - cy)), 0, rows - small.rows);
  cv::Mat out = cv::Mat::zeros(rows, cols, CV_8UC1);
  small.copyTo(out(cv::Rect(ox, oy, small.cols, small.rows)));
  return out;
}

namespace {

// Bounds on an image file, far beyond a photo of a digit: larger files are refused before decoding.
constexpr int64_t kMaxImageBytes = int64_t{64} << 20;
constexpr int64_t kMaxImagePixels = 50'000'000;
// Larger images are reduced to this longer side before the preprocessing (whose cost grows faster
// than the pixel count): the digit ends as 20x20 pixels anyway.
constexpr int kWorkingSide = 1024;

uint32_t big_endian(const std::string& b, size_t at, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<size_t>(i)]);
  return v;
}
uint32_t little_endian(const std::string& b, size_t at, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<size_t>(i)]);
  return v;
}

// Width and height from a PNG, JPEG or BMP header (the formats predict takes), read before OpenCV
// decodes anything; nullopt for anything else or a header cut short.
std::optional<std::pair<int64_t, int64_t>> header_size(const std::string& b) {
  if (b.size() >= 24 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0 && b.compare(12, 4, "IHDR") == 0)
    return std::pair<int64_t, int64_t>{big_endian(b, 16, 4), big_endian(b, 20, 4)};
  if (b.size() >= 26 && b.compare(0, 2, "BM") == 0) {
    const auto height = static_cast<int32_t>(little_endian(b, 22, 4));  // negative: stored top-down
    return std::pair<int64_t, int64_t>{static_cast<int32_t>(little_endian(b, 18, 4)), std::abs(static_cast<int64_t>(height))};
  }
  if (b.size() >= 4 && static_cast<unsigned char>(b[0]) == 0xFF && static_cast<unsigned char>(b[1]) == 0xD8) {
    // JPEG: walk the markers to the first start-of-frame (SOF0..SOF15 but DHT C4, JPG C8, DAC CC).
    for (size_t at = 2; at + 9 <= b.size();) {
      if (static_cast<unsigned char>(b[at]) != 0xFF) return std::nullopt;
      const unsigned marker = static_cast<unsigned char>(b[at + 1]);
      if (marker == 0xFF) {  // fill byte
        ++at;
        continue;
      }
      const uint32_t length = big_endian(b, at + 2, 2);
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC)
        return std::pair<int64_t, int64_t>{big_endian(b, at + 7, 2), big_endian(b, at + 5, 2)};
      if (length < 2) return std::nullopt;
      at += 2 + length;
    }
  }
  return std::nullopt;
}

// What a file cut short lacks ("" when it ends whole): a PNG ends with its IEND chunk, a JPEG with
// its end-of-image marker (a few bytes of padding after it are allowed), a BMP is as long as its
// header says. OpenCV decodes a cut file without a word, the missing part grey.
std::string missing_end(const std::string& b) {
  if (b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0)
    return b.size() >= 12 && b.compare(b.size() - 12, 8, std::string("\0\0\0\0IEND", 8)) == 0 ? "" : "its PNG IEND chunk is missing";
  if (b.compare(0, 2, "BM") == 0) return little_endian(b, 2, 4) <= b.size() ? "" : "it is shorter than its BMP header says";
  constexpr size_t kPadding = 64;
  const size_t from = b.size() > kPadding ? b.size() - kPadding : 0;
  return b.find("\xFF\xD9", from) != std::string::npos ? "" : "its JPEG end-of-image marker is missing";
}

// Sends this process's stderr to /dev/null while it lives: OpenCV and libpng print their own lines
// about a bad file (and libpng warnings about good ones); the one line about it is ours.
class QuietStderr {
 public:
  QuietStderr() {
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int null = ::open("/dev/null", O_WRONLY);
    if (saved_ >= 0 && null >= 0) ::dup2(null, 2);
    if (null >= 0) ::close(null);
  }
  ~QuietStderr() {
    std::fflush(stderr);
    if (saved_ >= 0) {
      ::dup2(saved_, 2);
      ::close(saved_);
    }
  }
  QuietStderr(const QuietStderr&) = delete;
  QuietStderr& operator=(const QuietStderr&) = delete;

 private:
  int saved_;
};

}  // namespace

torch::Tensor load_digit(const fs::path& file) {
  const std::string bytes = read_user_file(file, "image", kMaxImageBytes);
  const std::string cannot = "image " + file.string() + " cannot be decoded (PNG, JPEG or BMP expected)";
  const auto size = header_size(bytes);
  if (!size) throw std::runtime_error(cannot);
  const auto [width, height] = *size;
  if (width < 1 || height < 1 || width > kMaxImagePixels || height > kMaxImagePixels || width * height > kMaxImagePixels)
    throw std::runtime_error("image " + file.string() + " is " + std::to_string(width) + "x" + std::to_string(height) +
                             " pixels; images here are at most " + std::to_string(kMaxImagePixels / 1000000) + " megapixels");
  if (const std::string missing = missing_end(bytes); !missing.empty())
    throw std::runtime_error("image " + file.string() + " is truncated: " + missing + " (a decoder would fill the rest with grey)");
  cv::Mat gray;
  try {
    QuietStderr quiet;
    gray = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())), cv::IMREAD_GRAYSCALE);
  } catch (const cv::Exception&) {
    gray.release();
  }
  if (gray.empty()) throw std::runtime_error(cannot);
  if (std::max(gray.rows, gray.cols) > kWorkingSide) {  // each side at least a pixel: a 2100x1 strip stays one pixel high
    const double scale = static_cast<double>(kWorkingSide) / std::max(gray.rows, gray.cols);
    const cv::Size reduced(std::max(1, static_cast<int>(std::lround(gray.cols * scale))), std::max(1, static_cast<int>(std::lround(gray.rows * scale))));
    cv::resize(gray, gray, reduced, 0, 0, cv::INTER_AREA);
  }
  const cv::Mat digit = prepare_digit(gray, file.string());
  return torch::from_blob(digit.data, {1, kImageRows, kImageCols}, torch::kU8).to(torch::kFloat32).div(255.0);
}

namespace {

// A folder's image files, sorted: entries that are no regular file (folders, links that lead
// nowhere or round in a loop) are passed over, as other files are.
std::vector<fs::path> images_in(const fs::path& dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (fs::directory_iterator e(dir, ec), end; !ec && e != end; e.increment(ec)) {
    std::string ext = e->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    std::error_code kind;
    if (e->is_regular_file(kind) && (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp")) found.push_back(e->path());
  }
  if (ec) throw std::runtime_error("directory " + dir.string() + " cannot be read (" + ec.message() + ")");
  if (found.empty()) throw std::runtime_error("directory " + dir.string() + " holds no .png, .jpg, .jpeg or .bmp images");
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

std::vector<fs::path> collect_images(const std::vector<std::string>& args) {
  std::vector<fs::path> files;
  for (const auto& a : args) {
    const fs::path p(a);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      const std::vector<fs::path> found = images_in(p);
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(fs::symlink_status(p, ec))) {
      files.push_back(p);  // load_digit refuses what is not a regular file
    } else {
      throw std::runtime_error("image " + a + " does not exist");
    }
  }
  return files;
}

}  // namespace mnist
