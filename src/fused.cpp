// fused: forward, softmax cross-entropy and backward of a Dense stack as loops over flat buffers.
#include "fused.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "layers.h"
#include "simd.h"

namespace mnist {
namespace {

// y += a * x over n floats: the one inner loop everything below is made of.
MNIST_INLINE void axpy(float* __restrict y, const float* __restrict x, float a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

MNIST_INLINE void init_rows(float* z, const float* bias, int64_t len, int64_t out) {
  for (int64_t i = 0; i < len; ++i) {
    if (bias)
      std::memcpy(z + i * out, bias, static_cast<size_t>(out) * sizeof(float));
    else
      std::memset(z + i * out, 0, static_cast<size_t>(out) * sizeof(float));
  }
}

MNIST_INLINE void activate_rows(float* z, int64_t n, Activation a) {
  switch (a) {
    case Activation::relu:
      for (int64_t j = 0; j < n; ++j) z[j] = z[j] > 0 ? z[j] : 0;
      break;
    case Activation::sigmoid:
      for (int64_t j = 0; j < n; ++j) z[j] = 1.0f / (1.0f + std::exp(-z[j]));
      break;
    case Activation::tanh:
      for (int64_t j = 0; j < n; ++j) z[j] = std::tanh(z[j]);
      break;
    default:
      break;  // linear (softmax is never a hidden activation here)
  }
}

// dA -> dZ in place, from the layer's outputs A (every supported derivative is a function of A).
MNIST_INLINE void activation_backward(float* __restrict d, const float* __restrict a, int64_t n, Activation act) {
  switch (act) {
    case Activation::relu:
      for (int64_t j = 0; j < n; ++j) d[j] = a[j] > 0 ? d[j] : 0;
      break;
    case Activation::sigmoid:
      for (int64_t j = 0; j < n; ++j) d[j] *= a[j] * (1 - a[j]);
      break;
    case Activation::tanh:
      for (int64_t j = 0; j < n; ++j) d[j] *= 1 - a[j] * a[j];
      break;
    default:
      break;
  }
}

// z[0..out) += sum over e of value[e] * W[index[e]]: one output row from the non-zero inputs of
// one sample. The row is built in tiles of 16-float vectors held in registers across all the
// inputs, then stored once (GCC's vector extension: one AVX-512 register, two AVX2 or four SSE2
// ones per vector); accumulating straight into memory costs a load and a store of the row per
// input. The sum per output is taken in the same order either way.
typedef float vec16 __attribute__((vector_size(64), aligned(4)));  // aligned(4): loads from any float

template <int Vectors>
MNIST_INLINE void row_tile(float* z, const float* w, int64_t out, const int32_t* index, const float* value, int64_t count) {
  vec16 acc[Vectors];
  for (int t = 0; t < Vectors; ++t) acc[t] = reinterpret_cast<const vec16*>(z)[t];
  for (int64_t e = 0; e < count; ++e) {
    const float v = value[e];
    const vec16* wr = reinterpret_cast<const vec16*>(w + index[e] * out);
    for (int t = 0; t < Vectors; ++t) acc[t] += v * wr[t];
  }
  for (int t = 0; t < Vectors; ++t) reinterpret_cast<vec16*>(z)[t] = acc[t];
}

MNIST_INLINE void row_combination(float* z, const float* w, int64_t out, const int32_t* index, const float* value, int64_t count) {
  int64_t j = 0;
  for (; j + 64 <= out; j += 64) row_tile<4>(z + j, w + j, out, index, value, count);
  if (j + 32 <= out) row_tile<2>(z + j, w + j, out, index, value, count), j += 32;
  if (j + 16 <= out) row_tile<1>(z + j, w + j, out, index, value, count), j += 16;
  if (j < out)
    for (int64_t e = 0; e < count; ++e) axpy(z + j, w + index[e] * out + j, value[e], out - j);
}

// z[i] = bias + sum over the row's non-zero pixels of value * W[pixel].
MNIST_CLONES void sparse_forward(float* z, const float* w, const float* bias, int64_t out, const int64_t* rows, int64_t len,
                                 const int64_t* start, const int32_t* pixel, const float* value) {
  init_rows(z, bias, len, out);
  for (int64_t i = 0; i < len; ++i) {
    const int64_t first = start[rows[i]];
    row_combination(z + i * out, w, out, pixel + first, value + first, start[rows[i] + 1] - first);
  }
}

// dW = sum over samples of (non-zero pixels) x dZ: the first layer's kernel gradient. The batch's
// non-zeros are first regrouped by pixel (a counting sort into `column_*`, samples in batch order),
// so each pixel's row of dW is summed in registers and stored once, instead of being loaded and
// stored once per sample that has the pixel. Each dW entry sums its terms in the same order.
MNIST_CLONES void sparse_weight_grad(float* dw, int64_t in, int64_t out, const float* dz, const int64_t* rows, int64_t len,
                                     const int64_t* start, const int32_t* pixel, const float* value, int64_t* column_start,
                                     int32_t* column_sample, float* column_value) {
  std::fill(column_start, column_start + in + 1, 0);
  for (int64_t i = 0; i < len; ++i)
    for (int64_t e = start[rows[i]]; e < start[rows[i] + 1]; ++e) ++column_start[pixel[e] + 1];
  for (int64_t k = 0; k < in; ++k) column_start[k + 1] += column_start[k];
  for (int64_t i = 0; i < len; ++i)
    for (int64_t e = start[rows[i]]; e < start[rows[i] + 1]; ++e) {
      const int64_t slot = column_start[pixel[e]]++;  // moves each start to the next column's
      column_sample[slot] = static_cast<int32_t>(i);
      column_value[slot] = value[e];
    }
  std::memset(dw, 0, static_cast<size_t>(in * out) * sizeof(float));
  for (int64_t k = 0, first = 0; k < in; ++k) {
    if (column_start[k] > first)  // the batch has pixel k somewhere
      row_combination(dw + k * out, dz, out, column_sample + first, column_value + first, column_start[k] - first);
    first = column_start[k];
  }
}

// z = bias + A W for a hidden layer; ReLU's zeros are skipped like the pixels: each row of A is
// first packed into its non-zero (index, value) pairs.
MNIST_CLONES void dense_forward(float* z, const float* a, const float* w, const float* bias, int64_t in, int64_t out, int64_t len,
                                int32_t* index, float* value) {
  init_rows(z, bias, len, out);
  for (int64_t i = 0; i < len; ++i) {
    int64_t count = 0;
    for (int64_t k = 0; k < in; ++k) {
      if (a[i * in + k] == 0) continue;
      index[count] = static_cast<int32_t>(k);
      value[count++] = a[i * in + k];
    }
    row_combination(z + i * out, w, out, index, value, count);
  }
}

MNIST_CLONES void dense_weight_grad(float* dw, const float* a, const float* dz, int64_t in, int64_t out, int64_t len) {
  std::memset(dw, 0, static_cast<size_t>(in * out) * sizeof(float));
  for (int64_t i = 0; i < len; ++i)
    for (int64_t k = 0; k < in; ++k)
      if (a[i * in + k] != 0) axpy(dw + k * out, dz + i * out, a[i * in + k], out);
}

// dA = dZ W^T, through W transposed into `wt` ([out, in]) so the loop is again an axpy.
MNIST_CLONES void input_grad(float* da, const float* dz, const float* w, float* wt, int64_t in, int64_t out, int64_t len) {
  for (int64_t k = 0; k < in; ++k)
    for (int64_t j = 0; j < out; ++j) wt[j * in + k] = w[k * out + j];
  std::memset(da, 0, static_cast<size_t>(len * in) * sizeof(float));
  for (int64_t i = 0; i < len; ++i)
    for (int64_t j = 0; j < out; ++j) axpy(da + i * in, wt + j * in, dz[i * out + j], in);
}

MNIST_CLONES void bias_grad(float* db, const float* dz, int64_t out, int64_t len) {
  std::memset(db, 0, static_cast<size_t>(out) * sizeof(float));
  for (int64_t i = 0; i < len; ++i) axpy(db, dz + i * out, 1.0f, out);
}

MNIST_CLONES void hidden_activation(float* z, int64_t n, Activation a) { activate_rows(z, n, a); }
MNIST_CLONES void hidden_backward(float* d, const float* a, int64_t n, Activation act) { activation_backward(d, a, n, act); }

// Softmax cross-entropy with Keras's label smoothing, mean over the batch: replaces the logits by
// d loss / d logits and returns the summed loss; counts where the argmax of the model's output
// (the logits through `output`, as Keras's accuracy sees them) is the label. `out`: `classes` floats.
float softmax_cross_entropy(float* z, const int64_t* labels, const int64_t* rows, int64_t len, int64_t classes, double smoothing,
                            Activation output, float* out, int64_t& correct) {
  const float off = static_cast<float>(smoothing / static_cast<double>(classes));
  const float on = static_cast<float>(1.0 - smoothing) + off;
  const float inv_len = 1.0f / static_cast<float>(len);
  float loss_sum = 0;
  for (int64_t i = 0; i < len; ++i) {
    float* zi = z + i * classes;
    const int64_t y = labels[rows[i]];
    std::copy(zi, zi + classes, out);
    if (output == Activation::softmax) {  // argmax(softmax) can still tie where exp underflows
      const float mx = *std::max_element(out, out + classes);
      for (int64_t c = 0; c < classes; ++c) out[c] = std::exp(out[c] - mx);
    } else {
      activate_rows(out, classes, output);  // sigmoid ties where it saturates to 1, as in Keras
    }
    correct += std::max_element(out, out + classes) - out == y;
    const float mx = *std::max_element(zi, zi + classes);
    float sum = 0, dot = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(zi[c] - mx);
    const float lse = mx + std::log(sum);
    for (int64_t c = 0; c < classes; ++c) {
      const float t = c == y ? on : off;
      dot += t * zi[c];
      zi[c] = (std::exp(zi[c] - lse) - t) * inv_len;
    }
    loss_sum += lse - dot;
  }
  return loss_sum;
}

}  // namespace

std::string fused_unsupported(const Model& model, const TrainingConfig& config, torch::Device device) {
  if (!config.fused) return "training.fused is false";
  if (!device.is_cpu()) return "it runs on the CPU only";
  if (config.optimizer.name != "adam" && config.optimizer.name != "adamw") return "it implements adam and adamw only";
  if (config.augmentation.enabled()) return "augmentation needs the autograd step";
  const auto& layers = model->layers();
  const bool logits_loss = config.loss.from_logits ? model->output_activation() == Activation::linear
                                                   : config.loss.semantics == LossSemantics::tensorflow;
  if (!logits_loss) return "it implements the softmax cross-entropy on the logits only";
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = *layers[i];
    if (l.type == "Flatten" && i == 0) continue;
    if (l.type != "Dense") return "it covers Flatten and Dense layers only (found " + l.type + ")";
    if (i + 1 < layers.size() && l.activation == Activation::softmax) return "a hidden softmax needs the autograd step";
  }
  if (layers.empty() || layers.back()->type != "Dense") return "the model must end in a Dense layer";
  return "";
}

FusedDenseStep::FusedDenseStep(const Model& model, KerasOptimizer& optimizer, const TrainingConfig& config)
    : optimizer_(optimizer), loss_(config.loss), output_(model->output_activation()) {
  const float* base = optimizer_.flat_params().data_ptr<float>();
  for (const auto& layer : model->layers()) {
    if (layer->type != "Dense") continue;
    Layer l;
    l.activation = layer->activation;
    for (const auto& p : layer->named_parameters(false)) {
      const int64_t offset = p.value().data_ptr<float>() - base;
      if (p.key() == "weight") {
        l.out = p.value().size(0);
        l.in = p.value().size(1);
        l.weight = offset;
      } else {
        l.bias = offset;
      }
    }
    layers_.push_back(l);
  }
  const int64_t batch = config.batch_size;
  for (const auto& l : layers_) acts_.emplace_back(static_cast<size_t>(batch * l.out));
  int64_t widest = 0, largest = 0;
  for (const auto& l : layers_) {
    widest = std::max({widest, l.in, l.out});
    largest = std::max(largest, l.in * l.out);
  }
  delta_.resize(static_cast<size_t>(batch * widest));
  delta_in_.resize(static_cast<size_t>(batch * widest));
  wt_.resize(static_cast<size_t>(largest));
  probs_.resize(static_cast<size_t>(layers_.back().out));
  packed_index_.resize(static_cast<size_t>(widest));
  packed_value_.resize(static_cast<size_t>(widest));
  column_start_.resize(static_cast<size_t>(layers_.front().in + 1));
  column_sample_.resize(static_cast<size_t>(batch * layers_.front().in));
  column_value_.resize(static_cast<size_t>(batch * layers_.front().in));
}

void FusedDenseStep::bind(const Split& train) {
  if (bound_.defined() && bound_.is_same(train.images)) return;
  const torch::Tensor images = train.images.contiguous().view({train.size(), -1});
  const torch::Tensor labels = train.labels.contiguous();
  const int64_t n = images.size(0), pixels = images.size(1);
  const float* x = images.data_ptr<float>();
  labels_.assign(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + n);
  const size_t nonzero = static_cast<size_t>(std::count_if(x, x + n * pixels, [](float v) { return v != 0; }));
  row_start_.assign(1, 0);
  row_start_.reserve(static_cast<size_t>(n) + 1);
  pixel_.clear();
  pixel_.reserve(nonzero);
  value_.clear();
  value_.reserve(nonzero);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < pixels; ++k) {
      if (x[i * pixels + k] == 0) continue;
      pixel_.push_back(static_cast<int32_t>(k));
      value_.push_back(x[i * pixels + k]);
    }
    row_start_.push_back(static_cast<int64_t>(pixel_.size()));
  }
  bound_ = train.images;
}

torch::Tensor FusedDenseStep::to_keras_layout(const torch::Tensor& flat) const {
  torch::Tensor out = flat.clone();
  for (const auto& l : layers_)
    out.narrow(0, l.weight, l.in * l.out).view({l.in, l.out}).copy_(flat.narrow(0, l.weight, l.in * l.out).view({l.out, l.in}).t());
  return out;
}

torch::Tensor FusedDenseStep::to_torch_layout(const torch::Tensor& flat) const {
  torch::Tensor out = flat.clone();
  for (const auto& l : layers_)
    out.narrow(0, l.weight, l.in * l.out).view({l.out, l.in}).copy_(flat.narrow(0, l.weight, l.in * l.out).view({l.in, l.out}).t());
  return out;
}

void FusedDenseStep::load() {
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> slots = optimizer_.state();
  params_ = to_keras_layout(optimizer_.flat_params());
  grads_ = torch::zeros_like(params_);
  m_ = to_keras_layout(slots[0]);
  v_ = to_keras_layout(slots[1]);
}

void FusedDenseStep::store() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> slots = optimizer_.state();
  optimizer_.flat_params().copy_(to_torch_layout(params_));
  slots[0] = to_torch_layout(m_);
  slots[1] = to_torch_layout(v_);
  optimizer_.load_state(slots);
}

void FusedDenseStep::forward(const int64_t* rows, int64_t len) {
  const float* p = params_.data_ptr<float>();
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    float* z = acts_[l].data();
    const float* bias = L.bias >= 0 ? p + L.bias : nullptr;
    if (l == 0)
      sparse_forward(z, p + L.weight, bias, L.out, rows, len, row_start_.data(), pixel_.data(), value_.data());
    else
      dense_forward(z, acts_[l - 1].data(), p + L.weight, bias, L.in, L.out, len, packed_index_.data(), packed_value_.data());
    if (l + 1 < layers_.size()) hidden_activation(z, len * L.out, L.activation);
  }
}

void FusedDenseStep::backward(const int64_t* rows, int64_t len) {
  const float* p = params_.data_ptr<float>();
  float* g = grads_.data_ptr<float>();
  const float* dz = acts_.back().data();  // the loss wrote d loss / d logits over the logits
  for (size_t l = layers_.size(); l-- > 0;) {
    const Layer& L = layers_[l];
    if (L.bias >= 0) bias_grad(g + L.bias, dz, L.out, len);
    if (l == 0) {
      sparse_weight_grad(g + L.weight, L.in, L.out, dz, rows, len, row_start_.data(), pixel_.data(), value_.data(),
                         column_start_.data(), column_sample_.data(), column_value_.data());
      break;
    }
    const float* a = acts_[l - 1].data();
    dense_weight_grad(g + L.weight, a, dz, L.in, L.out, len);
    input_grad(delta_in_.data(), dz, p + L.weight, wt_.data(), L.in, L.out, len);
    hidden_backward(delta_in_.data(), a, len * L.in, layers_[l - 1].activation);
    std::swap(delta_, delta_in_);
    dz = delta_.data();
  }
}

void FusedDenseStep::step(const int64_t* rows, int64_t len, float& loss_sum, int64_t& correct) {
  forward(rows, len);
  const Layer& last = layers_.back();
  loss_sum += softmax_cross_entropy(acts_.back().data(), labels_.data(), rows, len, last.out, loss_.label_smoothing,
                                    output_, probs_.data(), correct);
  backward(rows, len);
  adam_update(params_.data_ptr<float>(), grads_.data_ptr<float>(), m_.data_ptr<float>(), v_.data_ptr<float>(),
              params_.numel(), optimizer_.next_adam_step());
}

}  // namespace mnist
