// fused_kernels: the fused step of a Dense stack on CUDA, as a handful of kernels per step.
//
// A step is 3 kernels per Dense layer plus one for the loss (6 for the paper's model, against
// about 40 for the autograd step): forward per layer; softmax cross-entropy and its gradient; then
// per layer, top down, the gradient of its input and a kernel that computes each parameter's
// gradient and applies the optimizer's update (update_rules.h) to it at once. Every kernel is one thread per output
// value, with no shared memory, written as a functor of the thread's index: fused_cuda.cu runs
// them as CUDA kernels, and tests/test_fused.cpp runs the very same step (fused_step
// below, with a loop for a launcher) on the CPU against the CPU's fused step.
// Buffers are in Keras's [in, out] kernel layout, like the CPU fused step's (fused.h).
#pragma once
#include <cstdint>
#include <vector>

#include "math/activation.h"
#include "math/cross_entropy.h"
#include "math/host_device.h"
#include "math/update_rules.h"

namespace mnist::kernels {

// The flat buffers, in Keras layout: parameters and the optimizer's three slots at the same
// offsets (update_rules.h says which slots a rule uses).
struct Params {
  float *p, *slot_a, *slot_b, *slot_c;
};

// One Dense layer: where its parameters sit in Params, and its buffers.
struct Layer {
  float *w, *bias;        // into Params::p; bias == nullptr: use_bias false
  int64_t weight, bias_offset;  // their offsets in every flat buffer
  int64_t in, out;
  Activation act;         // hidden: applied in forward; last layer: the logits are kept
  float *a, *delta;       // [batch, out]: outputs (last: logits); d loss / d z
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

// Thread b: sample b's softmax cross-entropy on the logits (cross_entropy.h), its gradient / len
// into delta, its loss, and whether Keras counts it correct (activation.h's predicted_class).
struct LossSample {
  Layer l;  // the last layer
  const int64_t* labels;
  const int64_t* rows;
  SmoothedTargets targets;
  float inv_len;
  Activation output;
  float* sample_loss;
  int64_t* sample_hit;
  MNIST_HD void operator()(int64_t b) const {
    const float* z = l.a + b * l.out;
    const int64_t y = labels[rows[b]];
    sample_hit[b] = predicted_class(z, l.out, output) == y;
    sample_loss[b] = softmax_cross_entropy(z, l.delta + b * l.out, l.out, y, targets, inv_len);
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
    below.delta[t] = activation_grad(s, below.a[t], below.act);
  }
};

// Thread t < in * out: the gradient of w[i, j] over the batch, then the optimizer's update of it
// (update_rules.h), its step's scalars read from `row` on the device; the next `out` threads do
// the bias.
struct Update {
  Input in;
  Layer l;
  int64_t len;
  Params params;
  UpdateRule rule;
  const float* row;  // a step_table row: {rate, decay_rate}
  MNIST_HD void apply(int64_t k, float g) const {
    update(rule, StepRow{row[0], row[1]}, params.p[k], params.slot_a[k], params.slot_b[k], params.slot_c[k], g);
  }
  MNIST_HD void operator()(int64_t t) const {
    if (t < l.in * l.out) {
      const int64_t i = t / l.out, j = t % l.out;
      float g = 0;
      for (int64_t b = 0; b < len; ++b) g += in.row(b)[i] * l.delta[b * l.out + j];
      return apply(l.weight + t, g);
    }
    const int64_t j = t - l.in * l.out;
    float g = 0;
    for (int64_t b = 0; b < len; ++b) g += l.delta[b * l.out + j];
    apply(l.bias_offset + j, g);
  }
};

// Everything one step needs, on the step's device but `layers` (a host array).
struct Step {
  const float* images;  // [samples, pixels]
  const int64_t* labels;
  const int64_t* rows;  // the batch's sample indices
  int64_t len, pixels;
  const std::vector<Layer>* layers;
  Params params;
  UpdateRule rule;
  const float* row;  // the step's row of KerasOptimizer::step_table, on the device
  SmoothedTargets targets;
  Activation output;
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
              LossSample{layers[last], s.labels, s.rows, s.targets, 1.0f / static_cast<float>(s.len), s.output, s.sample_loss,
                         s.sample_hit},
              LossSum{s.sample_loss, s.sample_hit, s.len, s.loss_sum, s.correct});
  for (size_t i = last + 1; i-- > 0;) {
    if (i > 0) launch.each(s.len * layers[i].in, InputGrad{layers[i], layers[i - 1]});
    const Layer& l = layers[i];
    launch.each(l.in * l.out + (l.bias ? l.out : 0), Update{input_of(i), l, s.len, s.params, s.rule, s.row});
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
