// layers: one class per Keras layer type (Keras shape rules, initialisers and weight layouts).
#include "model/layers.h"

#include <cmath>
#include <cstdio>
#include <numeric>

#include "config/errors.h"

namespace mnist {

int64_t numel(const Shape& s) { return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<>()); }

namespace {

std::string ints(const std::vector<int64_t>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  std::string s = buf;
  return s.find_first_of(".e") == std::string::npos ? s + ".0" : s;
}

// keras.initializers.GlorotUniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)), where
// a Conv2D kernel's fans count its receptive field. LibTorch's defaults (kaiming_uniform with
// a = sqrt(5), bias U(+-1/sqrt(fan_in))) differ.
torch::Tensor glorot_uniform(const Shape& torch_shape, int64_t fan_in, int64_t fan_out, at::Generator& gen) {
  const double limit = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return torch::empty(torch_shape).uniform_(-limit, limit, gen);
}

void require_image(const Shape& input, const LayerSpec& spec, const std::string& path) {
  if (input.size() != 3)
    throw ConfigError(path, spec.type() + " needs an image input (height, width, channels) but receives " + format_shape(input) +
                                "; it must come before any Flatten or Dense layer");
}

// TensorFlow's padding arithmetic. valid: floor((in - k) / s) + 1. same: ceil(in / s), padded by
// max((out - 1) s + k - in, 0) split with the odd pixel after (bottom/right). An even split is
// LibTorch's own `padding` argument (no copy of the input); an odd one, which LibTorch's
// symmetric padding cannot express, is padded explicitly.
struct Window {
  int64_t out = 0, before = 0, after = 0;
};
Window window(int64_t in, int64_t k, int64_t s, Padding p) {
  if (p == Padding::valid) return {in >= k ? (in - k) / s + 1 : 0, 0, 0};
  const int64_t out = (in + s - 1) / s;
  const int64_t total = std::max<int64_t>((out - 1) * s + k - in, 0);
  return {out, total / 2, total - total / 2};
}

// Spatial windows of Conv2D and the poolings: output size and the padding of each side.
struct Spatial {
  Window h, w;
  bool symmetric() const { return h.before == h.after && w.before == w.after; }
  std::vector<int64_t> pads() const { return {w.before, w.after, h.before, h.after}; }  // constant_pad_nd order
  // What LibTorch's `padding` argument does (conv2d / pooling order): an even split, else none.
  std::vector<int64_t> padding() const {
    return symmetric() ? std::vector<int64_t>{h.before, w.before} : std::vector<int64_t>{0, 0};
  }
};
Spatial spatial(const Shape& in, const Pair& k, const Pair& s, Padding p, const LayerSpec& spec, const std::string& path) {
  Spatial out{window(in[0], k[0], s[0], p), window(in[1], k[1], s[1], p)};
  if (out.h.out < 1 || out.w.out < 1)
    throw ConfigError(path, spec.type() + " window " + ints({k[0], k[1]}) + " does not fit its input " + format_shape(in) +
                                " with padding \"valid\"; use a smaller window, padding \"same\", or fewer pooling layers before it");
  return out;
}

// The explicit padding an odd split needs (none when Spatial::padding() does it), as a tensor op
// and as TorchScript.
torch::Tensor pad_odd(const Spatial& sp, const torch::Tensor& x, double value) {
  return sp.symmetric() ? x : torch::constant_pad_nd(x, sp.pads(), value);
}
std::string pad_script(const Spatial& sp, const std::string& value) {
  return sp.symmetric() ? "" : "  x = torch.constant_pad_nd(x, " + ints(sp.pads()) + ", " + value + ")\n";
}

class Flatten : public Layer {
 public:
  explicit Flatten(const Shape& in) : channels_last_(in.size() == 3 && in[2] > 1) {}
  // Keras flattens (H, W, C); with one channel that is the same order as LibTorch's (C, H, W).
  torch::Tensor forward(const torch::Tensor& x) override {
    return channels_last_ ? x.permute({0, 2, 3, 1}).flatten(1) : x.flatten(1);
  }
  std::string script() const override {
    return channels_last_ ? "  x = x.permute([0, 2, 3, 1]).flatten(1)\n" : "  x = torch.flatten(x, 1)\n";
  }

 private:
  bool channels_last_;
};

class Reshape : public Layer {
 public:
  Reshape(const Shape& in, const Shape& out) : from_image_(in.size() == 3), to_image_(out.size() == 3) {
    target_ = {-1};
    target_.insert(target_.end(), out.begin(), out.end());
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = (from_image_ ? x.permute({0, 2, 3, 1}) : x).reshape(target_);
    return to_image_ ? y.permute({0, 3, 1, 2}) : y;
  }
  std::string script() const override {
    return std::string(from_image_ ? "  x = x.permute([0, 2, 3, 1])\n" : "") + "  x = x.reshape(" + ints(target_) + ")\n" +
           (to_image_ ? "  x = x.permute([0, 3, 1, 2])\n" : "");
  }

 private:
  bool from_image_, to_image_;
  std::vector<int64_t> target_;
};

class Dense : public Layer {
 public:
  Dense(const DenseSpec& s, int64_t in, at::Generator& gen) : in_(in) {
    weight_ = register_parameter("weight", glorot_uniform({s.units, in}, in, s.units, gen));
    if (s.use_bias) bias_ = register_parameter("bias", torch::zeros({s.units}));  // keras.initializers.Zeros
  }
  torch::Tensor forward(const torch::Tensor& x) override { return torch::linear(x, weight_, bias_); }
  std::string script() const override {
    return bias_.defined() ? "  x = torch.addmm(self.bias, x, self.weight.t())\n" : "  x = torch.mm(x, self.weight.t())\n";
  }
  std::vector<KerasWeight> keras_weights() const override {
    std::vector<KerasWeight> w = {{"kernel", "weight", {in_, weight_.size(0)}, {1, 0}}};
    if (bias_.defined()) w.push_back({"bias", "bias", {weight_.size(0)}, {}});
    return w;
  }

 private:
  int64_t in_;
  torch::Tensor weight_, bias_;
};

class Conv2D : public Layer {
 public:
  Conv2D(const Conv2DSpec& s, const Shape& in, const Spatial& sp, at::Generator& gen) : spec_(s), sp_(sp) {
    const int64_t field = s.kernel_size[0] * s.kernel_size[1];
    weight_ = register_parameter(
        "weight", glorot_uniform({s.filters, in[2], s.kernel_size[0], s.kernel_size[1]}, field * in[2], field * s.filters, gen));
    if (s.use_bias) bias_ = register_parameter("bias", torch::zeros({s.filters}));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::conv2d(pad_odd(sp_, x, 0), weight_, bias_, {spec_.strides[0], spec_.strides[1]}, sp_.padding());
  }
  std::string script() const override {
    return pad_script(sp_, "0.0") + "  x = torch.conv2d(x, self.weight, " + (bias_.defined() ? "self.bias" : "None") + ", " +
           ints({spec_.strides[0], spec_.strides[1]}) + ", " + ints(sp_.padding()) + ")\n";
  }
  std::vector<KerasWeight> keras_weights() const override {
    // Keras kernel (kh, kw, in, out) -> LibTorch (out, in, kh, kw)
    std::vector<KerasWeight> w = {
        {"kernel", "weight", {weight_.size(2), weight_.size(3), weight_.size(1), weight_.size(0)}, {3, 2, 0, 1}}};
    if (bias_.defined()) w.push_back({"bias", "bias", {weight_.size(0)}, {}});
    return w;
  }

 private:
  Conv2DSpec spec_;
  Spatial sp_;
  torch::Tensor weight_, bias_;
};

class Pooling2D : public Layer {
 public:
  Pooling2D(const Pooling2DSpec& s, const Spatial& sp, bool max) : spec_(s), sp_(sp), max_(max) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    const std::vector<int64_t> k = {spec_.pool_size[0], spec_.pool_size[1]}, st = {spec_.strides[0], spec_.strides[1]};
    // Padding never wins a max (LibTorch's `padding` is -inf there too), and TensorFlow's "same"
    // average excludes it from each window's count.
    if (max_) return torch::max_pool2d(pad_odd(sp_, x, -INFINITY), k, st, sp_.padding());
    if (sp_.symmetric()) return torch::avg_pool2d(x, k, st, sp_.padding(), /*ceil_mode=*/false, /*count_include_pad=*/false);
    const torch::Tensor sums = torch::avg_pool2d(torch::constant_pad_nd(x, sp_.pads(), 0), k, st);
    const torch::Tensor ones = torch::ones({1, 1, x.size(2), x.size(3)}, x.options());
    return sums / torch::avg_pool2d(torch::constant_pad_nd(ones, sp_.pads(), 0), k, st);
  }
  std::string script() const override {
    const std::string k = ints({spec_.pool_size[0], spec_.pool_size[1]}), st = ints({spec_.strides[0], spec_.strides[1]});
    if (max_)
      return pad_script(sp_, "float('-inf')") + "  x = torch.max_pool2d(x, " + k + ", " + st + ", " + ints(sp_.padding()) + ")\n";
    if (sp_.symmetric()) return "  x = torch.avg_pool2d(x, " + k + ", " + st + ", " + ints(sp_.padding()) + ", False, False)\n";
    return "  ones = torch.ones([1, 1, x.size(2), x.size(3)], dtype=x.dtype, device=x.device)\n" + pad_script(sp_, "0.0") +
           "  x = torch.avg_pool2d(x, " + k + ", " + st + ") / torch.avg_pool2d(torch.constant_pad_nd(ones, " +
           ints(sp_.pads()) + ", 0.0), " + k + ", " + st + ")\n";
  }

 private:
  Pooling2DSpec spec_;
  Spatial sp_;
  bool max_;  // MaxPooling2D, else AveragePooling2D
};

class GlobalAveragePooling2D : public Layer {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return x.mean({2, 3}); }
  std::string script() const override { return "  x = x.mean([2, 3])\n"; }
};

// keras.layers.Dropout: in training, zero each value with probability `rate` and scale the rest by
// 1 / (1 - rate); in evaluation, nothing. The mask comes from the trainer's per-step generator.
class Dropout : public Layer {
 public:
  Dropout(double rate, std::shared_ptr<Noise> noise) : rate_(rate), noise_(std::move(noise)) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    if (!is_training() || rate_ == 0) return x;
    TORCH_CHECK(noise_->generator.defined(), "Dropout in training needs the trainer's generator");
    torch::Tensor mask = torch::empty_like(x).bernoulli_(1.0 - rate_, noise_->generator);
    return x * mask.div_(1.0 - rate_);
  }
  std::string script() const override { return ""; }

 private:
  double rate_;
  std::shared_ptr<Noise> noise_;
};

// keras.layers.BatchNormalization over the channel axis (Keras's axis=-1 is LibTorch's dim 1).
// Keras updates its moving variance with the biased batch variance (ops.moments), where LibTorch's
// batch_norm uses the unbiased one, so the moving statistics are updated here, from the batch
// statistics native_batch_norm returns; momentum is Keras's (the weight of the old value).
class BatchNormalization : public Layer {
 public:
  BatchNormalization(const BatchNormalizationSpec& s, int64_t channels) : spec_(s) {
    if (s.scale) weight_ = register_parameter("weight", torch::ones({channels}));  // gamma
    if (s.center) bias_ = register_parameter("bias", torch::zeros({channels}));    // beta
    running_mean_ = register_buffer("running_mean", torch::zeros({channels}));     // moving_mean
    running_var_ = register_buffer("running_var", torch::ones({channels}));        // moving_variance
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    if (!is_training())
      return torch::batch_norm(x, weight_, bias_, running_mean_, running_var_, false, 0.0, spec_.epsilon, true);
    auto [y, mean, invstd] = torch::native_batch_norm(x, weight_, bias_, {}, {}, true, 0.0, spec_.epsilon);
    torch::NoGradGuard no_grad;
    running_mean_.lerp_(mean, 1.0 - spec_.momentum);
    running_var_.lerp_(invstd.pow(-2).sub_(spec_.epsilon), 1.0 - spec_.momentum);
    return y;
  }
  std::string script() const override {
    return std::string("  x = torch.batch_norm(x, ") + (weight_.defined() ? "self.weight" : "None") + ", " +
           (bias_.defined() ? "self.bias" : "None") + ", self.running_mean, self.running_var, False, 0.0, " +
           number(spec_.epsilon) + ", False)\n";
  }
  std::vector<KerasWeight> keras_weights() const override {
    const int64_t c = running_mean_.size(0);
    std::vector<KerasWeight> w;
    if (weight_.defined()) w.push_back({"gamma", "weight", {c}, {}});
    if (bias_.defined()) w.push_back({"beta", "bias", {c}, {}});
    w.push_back({"moving_mean", "running_mean", {c}, {}});
    w.push_back({"moving_variance", "running_var", {c}, {}});
    return w;
  }

 private:
  BatchNormalizationSpec spec_;
  torch::Tensor weight_, bias_, running_mean_, running_var_;
};

class ActivationLayer : public Layer {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return x; }  // the model applies `activation`
  std::string script() const override { return ""; }
};

// Reshape's output shape, resolving Keras's one -1.
Shape reshape_target(const ReshapeSpec& s, const Shape& in, const std::string& path) {
  Shape out = s.target_shape.dims;
  int64_t known = 1;
  for (auto d : out)
    if (d != -1) known *= d;
  const int64_t total = numel(in);
  for (auto& d : out)
    if (d == -1) d = total % known == 0 ? total / known : -1;
  if (numel(out) != total)
    throw ConfigError(path + ".target_shape", "cannot reshape " + format_shape(in) + " (" + std::to_string(total) +
                                                  " values) to " + ints(s.target_shape.dims));
  return out;
}

}  // namespace

std::string format_shape(const Shape& s) {
  std::string out = "(None";
  for (auto d : s) out += ", " + std::to_string(d);
  return out + ")";
}

std::shared_ptr<Layer> make_layer(const LayerSpec& spec, const Shape& in, at::Generator& init,
                                  const std::shared_ptr<Noise>& noise, const std::string& path) {
  std::shared_ptr<Layer> layer;
  Shape out = in;
  std::visit(
      [&](const auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, FlattenSpec>) {
          layer = std::make_shared<Flatten>(in);
          out = {numel(in)};
        } else if constexpr (std::is_same_v<T, ReshapeSpec>) {
          out = reshape_target(s, in, path);
          layer = std::make_shared<Reshape>(in, out);
        } else if constexpr (std::is_same_v<T, DenseSpec>) {
          // Keras's Dense acts on the last axis of any input, but a Dense on an image then leaves an
          // output no classification loss accepts; ask for the Flatten instead.
          if (in.size() != 1)
            throw ConfigError(path, "Dense needs a flat input but receives " + format_shape(in) +
                                        "; put a {\"type\": \"Flatten\"} layer before it");
          layer = std::make_shared<Dense>(s, in[0], init);
          layer->activation = s.activation;
          out = {s.units};
        } else if constexpr (std::is_same_v<T, Conv2DSpec>) {
          require_image(in, spec, path);
          const Spatial sp = spatial(in, s.kernel_size, s.strides, s.padding, spec, path);
          layer = std::make_shared<Conv2D>(s, in, sp, init);
          layer->activation = s.activation;
          out = {sp.h.out, sp.w.out, s.filters};
        } else if constexpr (std::is_base_of_v<Pooling2DSpec, T>) {
          require_image(in, spec, path);
          const Spatial sp = spatial(in, s.pool_size, s.strides, s.padding, spec, path);
          layer = std::make_shared<Pooling2D>(s, sp, /*max=*/std::is_same_v<T, MaxPooling2DSpec>);
          out = {sp.h.out, sp.w.out, in[2]};
        } else if constexpr (std::is_same_v<T, GlobalAveragePooling2DSpec>) {
          require_image(in, spec, path);
          layer = std::make_shared<GlobalAveragePooling2D>();
          out = {in[2]};
        } else if constexpr (std::is_same_v<T, DropoutSpec>) {
          layer = std::make_shared<Dropout>(s.rate, noise);
        } else if constexpr (std::is_same_v<T, BatchNormalizationSpec>) {
          layer = std::make_shared<BatchNormalization>(s, in.back());
        } else {
          static_assert(std::is_same_v<T, ActivationSpec>);
          layer = std::make_shared<ActivationLayer>();
          layer->activation = s.activation;
        }
      },
      spec.params);
  layer->name = spec.name;
  layer->type = spec.type();
  layer->params = spec.params;
  layer->output_shape = out;
  return layer;
}

}  // namespace mnist
