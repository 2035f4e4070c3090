// augment: per-sample affine (+ elastic) sampling grids, then one bilinear grid_sample.
#include "data/augment.h"

#include <cmath>

namespace mnist {
namespace {

// Uniform in [-r, r], one value per sample, on x's device.
torch::Tensor symmetric(int64_t n, double r, at::Generator& gen, const torch::TensorOptions& opts) {
  return torch::rand({n}, gen, opts).mul_(2 * r).sub_(r);
}

// ImageDataGenerator's shift rule: below 1 a fraction of the size, from 1 up pixels.
double shift_pixels(double range, int64_t size) { return range < 1 ? range * static_cast<double>(size) : range; }

// A 1-D Gaussian kernel of standard deviation sigma, truncated at 2 sigma, summing to 1.
torch::Tensor gaussian(double sigma, const torch::TensorOptions& opts) {
  const int64_t radius = static_cast<int64_t>(std::ceil(2 * sigma));
  torch::Tensor t = torch::arange(-radius, radius + 1, opts);
  torch::Tensor k = torch::exp(-(t * t) / (2 * sigma * sigma));
  return k / k.sum();
}

}  // namespace

torch::Tensor augment(const torch::Tensor& x, const AugmentationConfig& c, at::Generator& gen) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const auto opts = x.options();
  const torch::Tensor angle = symmetric(n, c.rotation_range * M_PI / 180.0, gen, opts);
  // Keras draws the two zoom factors independently.
  const torch::Tensor zx = symmetric(n, c.zoom_range, gen, opts).add_(1), zy = symmetric(n, c.zoom_range, gen, opts).add_(1);
  // grid_sample's coordinates run over [-1, 1]: a pixel is 2 / size of them.
  const torch::Tensor tx = symmetric(n, shift_pixels(c.width_shift_range, w) * 2.0 / static_cast<double>(w), gen, opts);
  const torch::Tensor ty = symmetric(n, shift_pixels(c.height_shift_range, h) * 2.0 / static_cast<double>(h), gen, opts);
  const torch::Tensor cos = angle.cos(), sin = angle.sin();
  // Output pixel p samples the input at R(angle) Z p + t.
  const torch::Tensor theta = torch::stack({torch::stack({cos * zx, -sin * zy, tx}, 1), torch::stack({sin * zx, cos * zy, ty}, 1)}, 1);
  torch::Tensor grid = torch::affine_grid_generator(theta, {n, 1, h, w}, /*align_corners=*/false);
  if (c.elastic_alpha > 0) {
    // Simard et al.: a field of uniform(-1, 1) displacements, smoothed by a Gaussian of width
    // sigma and scaled by alpha pixels.
    const torch::Tensor k = gaussian(c.elastic_sigma, opts);
    const int64_t r = (k.size(0) - 1) / 2;
    torch::Tensor field = torch::rand({n * 2, 1, h, w}, gen, opts).mul_(2).sub_(1);
    const std::vector<int64_t> stride = {1, 1}, pad_h = {r, 0}, pad_w = {0, r};
    field = torch::conv2d(field, k.view({1, 1, -1, 1}), torch::Tensor(), stride, pad_h);
    field = torch::conv2d(field, k.view({1, 1, 1, -1}), torch::Tensor(), stride, pad_w);
    field = field.view({n, 2, h, w}).permute({0, 2, 3, 1});
    const torch::Tensor scale = torch::tensor({2.0 * c.elastic_alpha / static_cast<double>(w), 2.0 * c.elastic_alpha / static_cast<double>(h)}, opts);
    grid = grid + field * scale;
  }
  // padding_mode 1 = border: Keras's default fill_mode "nearest"; 0 = zeros: "constant" with cval 0.
  return torch::grid_sampler(x, grid, /*interpolation_mode=*/0, /*padding_mode=*/c.fill_mode == FillMode::nearest ? 1 : 0,
                             /*align_corners=*/false);
}

}  // namespace mnist
