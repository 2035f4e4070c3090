// predict: MNIST-style preprocessing of image files.
#include "predict.h"

#include <algorithm>
#include <cmath>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

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
  const int ox = std::clamp(static_cast<int>(std::lround(14.0 - cx)), 0, 28 - small.cols);
  const int oy = std::clamp(static_cast<int>(std::lround(14.0 - cy)), 0, 28 - small.rows);
  cv::Mat out = cv::Mat::zeros(28, 28, CV_8UC1);
  small.copyTo(out(cv::Rect(ox, oy, small.cols, small.rows)));
  return out;
}

torch::Tensor load_digit(const fs::path& file) {
  if (!fs::exists(file)) throw std::runtime_error("image " + file.string() + " does not exist");
  const cv::Mat gray = cv::imread(file.string(), cv::IMREAD_GRAYSCALE);
  if (gray.empty()) throw std::runtime_error("image " + file.string() + " cannot be decoded (PNG, JPEG or BMP expected)");
  const cv::Mat digit = prepare_digit(gray, file.string());
  return torch::from_blob(digit.data, {1, 28, 28}, torch::kU8).to(torch::kFloat32).div(255.0);
}

std::vector<fs::path> collect_images(const std::vector<std::string>& args) {
  std::vector<fs::path> files;
  for (const auto& a : args) {
    const fs::path p(a);
    if (fs::is_directory(p)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(p)) {
        std::string ext = e.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
        if (e.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp")) found.push_back(e.path());
      }
      if (found.empty()) throw std::runtime_error("directory " + a + " holds no .png, .jpg, .jpeg or .bmp images");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(p)) {
      files.push_back(p);
    } else {
      throw std::runtime_error("image " + a + " does not exist");
    }
  }
  return files;
}

}  // namespace mnist
