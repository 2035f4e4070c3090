// fused_kernels: the fused step of a Dense stack on CUDA, as a handful of kernels per step.
//
// A step is 3 kernels per Dense layer plus one for the loss (6 for the paper's model, against
// about 40 for the autograd step): forward per layer; softmax cross-entropy and its gradient; then
// per layer, top down, the gradient of its input and a kernel that computes each parameter's
// gradient and applies Keras's Adam update to it at once. Every kernel is one thread per output
// value, with no shared memory, written as a functor of the thread's index: fused_cuda.cu runs
// them as CUDA kernels, and tests/test_fused.cpp runs the very same step (fused_step
// below, with a loop for a launcher) on the CPU against the CPU's fused step.
// Buffers are in Keras's [in, out] kernel layout, like the CPU fused step's (fused.h).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef __CUDACC__
#define MNIST_HD __host__ __device__
#else
#define MNIST_HD
#endif

namespace mnist::kernels {

enum class Act : int { linear, relu, sigmoid, tanh, softmax };

MNIST_HD inline float activate(float z, Act a) {
  switch (a) {
    case Act::relu: return z > 0 ? z : 0;
    case Act::sigmoid: return 1.0f / (1.0f + expf(-z));
    case Act::tanh: return tanhf(z);
    default: return z;
  }
}

// d loss / d z from d loss / d a, given the activation's output a (every supported derivative is
// a function of it).
MNIST_HD inline float activation_backward(float d, float a, Act act) {
  switch (act) {
    case Act::relu: return a > 0 ? d : 0;
    case Act::sigmoid: return d * (a * (1 - a));
    case Act::tanh: return d * (1 - a * a);
    default: return d;
  }
}

// One Dense layer's buffers. w, bias: parameters; m_*, v_*: Adam's slots at the same offsets.
struct Layer {
  float *w, *m_w, *v_w;
  float *bias, *m_b, *v_b;  // bias == nullptr: use_bias false
  int64_t in, out;
  Act act;                  // hidden: applied in forward; last layer: the logits are kept
  float *a, *delta;         // [batch, out]: outputs (last: logits); d loss / d z
};

// What a layer reads as input row b: the image of sample rows[b], or the previous layer's row b.
struct Input {
  const float* x;
  const int64_t* rows;  // nullptr: row b is x + b * width
  int64_t width;
  MNIST_HD const float* row(int64_t b) const { return x + (rows ? rows[b] : b) * width; }
};

// Thread (b, j): a[b, j] = act(bias[j] + sum_i in[b, i] w[i, j]), in the CPU step's order.
struct Forward {
  Input in;
  Layer l;
  bool hidden;
  MNIST_HD void operator()(int64_t t) const {
    const int64_t b = t / l.out, j = t % l.out;
    const float* x = in.row(b);
    float s = l.bias ? l.bias[j] : 0.0f;
    for (int64_t i = 0; i < l.in; ++i) s += x[i] * l.w[i * l.out + j];
    l.a[t] = hidden ? activate(s, l.act) : s;
  }
};

// Thread b: sample b's softmax cross-entropy on the logits (label smoothing: targets on/off),
// its gradient / len into delta, its loss and whether Keras counts it correct (argmax of the
// activated output, first index on ties, as the CPU step and Keras count saturated sigmoids).
struct LossSample {
  Layer l;  // the last layer
  const int64_t* labels;
  const int64_t* rows;
  float on, off, inv_len;
  Act output;
  float* sample_loss;
  int64_t* sample_hit;
  MNIST_HD void operator()(int64_t b) const {
    const float* z = l.a + b * l.out;
    float* dz = l.delta + b * l.out;
    const int64_t y = labels[rows[b]];
    float mx = z[0];
    for (int64_t c = 1; c < l.out; ++c) mx = z[c] > mx ? z[c] : mx;
    int64_t best = 0;
    float best_p = 0;
    for (int64_t c = 0; c < l.out; ++c) {  // argmax(softmax) can still tie where exp underflows
      const float p = output == Act::softmax ? expf(z[c] - mx) : activate(z[c], output);
      if (c == 0 || p > best_p) best = c, best_p = p;
    }
    float sum = 0, dot = 0;
    for (int64_t c = 0; c < l.out; ++c) sum += expf(z[c] - mx);
    const float lse = mx + logf(sum);
    for (int64_t c = 0; c < l.out; ++c) {
      const float target = c == y ? on : off;
      dot += target * z[c];
      dz[c] = (expf(z[c] - lse) - target) * inv_len;
    }
    sample_loss[b] = lse - dot;
    sample_hit[b] = best == y;
  }
};

// One thread, after every LossSample: adds the batch's loss (summed in sample order, in float, as
// the CPU step and Keras's running mean do) and hits to the epoch's sums.
struct LossSum {
  const float* sample_loss;
  const int64_t* sample_hit;
  int64_t len;
  float* loss_sum;
  int64_t* correct;
  MNIST_HD void operator()() const {
    float batch = 0;
    int64_t hits = 0;
    for (int64_t b = 0; b < len; ++b) batch += sample_loss[b], hits += sample_hit[b];
    *loss_sum += batch;
    *correct += hits;
  }
};

// Thread (b, i): d loss / d z of the layer below at [b, i], through this layer's weights (read
// before this layer's Update changes them).
struct InputGrad {
  Layer l, below;
  MNIST_HD void operator()(int64_t t) const {
    const int64_t b = t / l.in, i = t % l.in;
    const float* d = l.delta + b * l.out;
    const float* w = l.w + i * l.out;
    float s = 0;
    for (int64_t j = 0; j < l.out; ++j) s += w[j] * d[j];
    below.delta[t] = activation_backward(s, below.a[t], below.act);
  }
};

// Keras's Adam on one parameter, as optim.cpp's adam_update computes it; rate = -alpha_t and
// decay_rate (AdamW's learning rate; 0 for adam) come from the step's row of
// KerasOptimizer::step_table, on the device.
struct Adam {
  const float* coefficients;
  float one_minus_beta_1, one_minus_beta_2, epsilon, weight_decay;
  MNIST_HD void operator()(float& p, float& m, float& v, float g) const {
    m = m + one_minus_beta_1 * (g - m);
    v = v + one_minus_beta_2 * (g * g - v);
    const float decayed = p - (p * weight_decay) * coefficients[1];
    p = decayed + (m * coefficients[0]) / (sqrtf(v) + epsilon);
  }
};

// Thread t < in * out: the gradient of w[i, j] over the batch, then its Adam update; the next
// `out` threads do the bias.
struct Update {
  Input in;
  Layer l;
  int64_t len;
  Adam adam;
  MNIST_HD void operator()(int64_t t) const {
    if (t < l.in * l.out) {
      const int64_t i = t / l.out, j = t % l.out;
      float g = 0;
      for (int64_t b = 0; b < len; ++b) g += in.row(b)[i] * l.delta[b * l.out + j];
      adam(l.w[t], l.m_w[t], l.v_w[t], g);
      return;
    }
    const int64_t j = t - l.in * l.out;
    float g = 0;
    for (int64_t b = 0; b < len; ++b) g += l.delta[b * l.out + j];
    adam(l.bias[j], l.m_b[j], l.v_b[j], g);
  }
};

// Everything one step needs, on the step's device but `layers` (a host array).
struct Step {
  const float* images;  // [samples, pixels]
  const int64_t* labels;
  const int64_t* rows;  // the batch's sample indices
  int64_t len, pixels;
  const std::vector<Layer>* layers;
  Adam adam;
  float on, off;
  Act output;
  float* sample_loss;  // [batch] scratch
  int64_t* sample_hit;
  float* loss_sum;
  int64_t* correct;
};

// The step's kernels in order. Launch provides each(n, f): f(t) for t in [0, n), and
// then(n, f, g): f(t) for every t, then g() once (one block on CUDA).
template <class Launch>
void fused_step(const Launch& launch, const Step& s) {
  const std::vector<Layer>& layers = *s.layers;
  const size_t last = layers.size() - 1;
  auto input_of = [&](size_t i) {
    return i == 0 ? Input{s.images, s.rows, s.pixels} : Input{layers[i - 1].a, nullptr, layers[i - 1].out};
  };
  for (size_t i = 0; i <= last; ++i) launch.each(s.len * layers[i].out, Forward{input_of(i), layers[i], i < last});
  launch.then(s.len,
              LossSample{layers[last], s.labels, s.rows, s.on, s.off, 1.0f / static_cast<float>(s.len), s.output,
                         s.sample_loss, s.sample_hit},
              LossSum{s.sample_loss, s.sample_hit, s.len, s.loss_sum, s.correct});
  for (size_t i = last + 1; i-- > 0;) {
    if (i > 0) launch.each(s.len * layers[i].in, InputGrad{layers[i], layers[i - 1]});
    const Layer& l = layers[i];
    launch.each(l.in * l.out + (l.bias ? l.out : 0), Update{input_of(i), l, s.len, s.adam});
  }
}

// The launcher of tests and of the CPU: every thread in turn.
struct SerialLaunch {
  template <class F>
  void each(int64_t n, F f) const {
    for (int64_t t = 0; t < n; ++t) f(t);
  }
  template <class F, class G>
  void then(int64_t n, F f, G g) const {
    each(n, f);
    g();
  }
};

// fused_cuda.cu: fused_step with CUDA kernels on `stream` (a cudaStream_t).
void fused_step_cuda(const Step& s, void* stream);

}  // namespace mnist::kernels
