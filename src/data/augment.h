// augment: random distortions of a training batch on its own device, in the spirit of Keras's
// ImageDataGenerator (rotation_range, width/height_shift_range, zoom_range, fill_mode), plus the
// elastic distortion of Simard et al. (2003). One affine_grid + grid_sample per batch; every draw
// comes from the generator passed in, so a batch's distortion is a pure function of its seed.
#pragma once
#include <torch/torch.h>

#include "config/config.h"

namespace mnist {

// x: [N, 1, H, W] in [0, 1]; returns a new tensor of the same shape.
torch::Tensor augment(const torch::Tensor& x, const AugmentationConfig& config, at::Generator& generator);

}  // namespace mnist
