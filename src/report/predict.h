// predict: digits from ordinary image files, prepared the way MNIST's digits were (LeCun et al.):
// grayscale; inverted when the background is light, so ink is bright on dark; cropped to the ink's
// bounding box; scaled to fit 20x20 keeping the aspect ratio; pasted into 28x28 with the centre of
// mass at the centre; divided by 255.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/torch.h>

namespace mnist {

// 8-bit grayscale image of any size -> 28x28 8-bit MNIST-style digit. Throws std::runtime_error
// (naming `what`) when the image is empty or has no ink.
cv::Mat prepare_digit(const cv::Mat& gray, const std::string& what);

// Reads PNG/JPEG/BMP with OpenCV and prepares it: float [1, 28, 28] in [0, 1].
torch::Tensor load_digit(const std::filesystem::path& file);

// Files and directories -> image files (a directory contributes its .png/.jpg/.jpeg/.bmp files,
// sorted). Throws std::runtime_error for a path that does not exist or a directory with no images.
std::vector<std::filesystem::path> collect_images(const std::vector<std::string>& args);

}  // namespace mnist
