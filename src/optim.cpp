// optim: Keras update rules (keras/src/optimizers/{adam,sgd,rmsprop}.py) on flat buffers.
#include "optim.h"

#include <cmath>

#include "simd.h"

namespace mnist {

// Keras's Adam, keras/src/optimizers/adam.py (AdamW's decay first, keras/src/optimizers/optimizer.py):
//   m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2);  p -= (m * alpha_t) / (sqrt(v) + eps)
// Each operation rounds on its own, in that order (the build does not contract a * b + c into an
// FMA), so the tensor version below gets the same bits.
MNIST_CLONES void adam_update(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                              int64_t n, const AdamStep& s) {
  const auto wd = static_cast<float>(s.weight_decay), lr = static_cast<float>(s.decay_rate), w1 = static_cast<float>(s.one_minus_beta_1),
             w2 = static_cast<float>(s.one_minus_beta_2), step = static_cast<float>(-s.alpha), eps = static_cast<float>(s.epsilon);
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] + (gi - m[i]) * w1;
    const float vi = v[i] + (gi * gi - v[i]) * w2;
    m[i] = mi;
    v[i] = vi;
    const float decayed = p[i] - (p[i] * wd) * lr;  // adam: wd = lr = 0, and p - 0 is p
    p[i] = decayed + (mi * step) / (std::sqrt(vi) + eps);
  }
}

void adam_update(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v,
                 const torch::Tensor& row, double one_minus_beta_1, double one_minus_beta_2, double epsilon,
                 double weight_decay, torch::Tensor t1, torch::Tensor t2) {
  const torch::Tensor rate = row.narrow(0, 0, 1), decay_rate = row.narrow(0, 1, 1);
  if (weight_decay != 0) {  // AdamW: p -= (p wd) lr, before Adam's update
    torch::mul_out(t1, p, weight_decay).mul_(decay_rate);
    p.sub_(t1);
  }
  torch::sub_out(t1, g, m).mul_(one_minus_beta_1);
  m.add_(t1);  // m += (g - m) (1 - beta_1)
  torch::mul_out(t1, g, g).sub_(v).mul_(one_minus_beta_2);
  v.add_(t1);  // v += (g^2 - v) (1 - beta_2)
  torch::sqrt_out(t1, v).add_(epsilon);
  torch::mul_out(t2, m, rate).div_(t1);
  p.add_(t2);  // p += (m (-alpha_t)) / (sqrt(v) + eps)
}

KerasOptimizer::KerasOptimizer(std::vector<torch::Tensor> params, OptimizerConfig config)
    : config_(std::move(config)), learning_rate_(config_.learning_rate) {
  TORCH_CHECK(!params.empty(), "KerasOptimizer needs parameters");
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  const auto opts = params.front().options().requires_grad(false);
  params_ = torch::empty({total}, opts);
  grads_ = torch::zeros({total}, opts);
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    const int64_t n = p.numel();
    auto flat_view = params_.narrow(0, offset, n).view(p.sizes());
    flat_view.copy_(p);
    p.set_data(flat_view);
    p.mutable_grad() = grads_.narrow(0, offset, n).view(p.sizes());
    offset += n;
  }
  slot_a_ = torch::zeros_like(params_);
  slot_b_ = torch::zeros_like(params_);
  slot_c_ = torch::zeros_like(params_);
  scratch_ = torch::empty_like(params_);
  scratch_2_ = torch::empty_like(params_);
}

namespace {

// Adam's step size at step t, as Keras computes it: in the variables' dtype T, from beta powers
// in T: alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t). In float32, 1 - beta_2^t cancels (and
// float32(0.999) is not 0.999), so Keras's alpha is up to 1e-5 away from the exact value; the
// exact value would bias every step the same way. glibc's powf gives TensorFlow's values.
template <typename T>
T keras_adam_alpha(double learning_rate, double beta_1, double beta_2, int64_t t) {
  const T step = static_cast<T>(t);
  return static_cast<T>(learning_rate) * std::sqrt(T(1) - std::pow(static_cast<T>(beta_2), step)) /
         (T(1) - std::pow(static_cast<T>(beta_1), step));
}

}  // namespace

float keras_adam_alpha_float32(double learning_rate, double beta_1, double beta_2, int64_t t) {
  return keras_adam_alpha<float>(learning_rate, beta_1, beta_2, t);
}

torch::Tensor KerasOptimizer::step_table(int64_t count, const std::function<double(int64_t)>& learning_rate) const {
  torch::Tensor table = torch::empty({count, 2}, torch::kDouble);
  auto row = table.accessor<double, 2>();
  const bool adam = config_.name == "adam" || config_.name == "adamw";
  const bool in_double = params_.scalar_type() == torch::kDouble;
  for (int64_t i = 0; i < count; ++i) {
    const double lr = learning_rate(i);
    const int64_t t = iterations_ + i + 1;
    const double alpha = !adam     ? lr
                         : in_double ? keras_adam_alpha<double>(lr, config_.beta_1, config_.beta_2, t)
                                     : keras_adam_alpha<float>(lr, config_.beta_1, config_.beta_2, t);
    row[i][0] = -alpha;
    row[i][1] = config_.name == "adamw" ? lr : 0.0;
  }
  return table.to(params_.scalar_type());
}

AdamStep KerasOptimizer::adam_step(const float* row) const {
  return {-static_cast<double>(row[0]), 1.0 - config_.beta_1, 1.0 - config_.beta_2, config_.epsilon, weight_decay(), row[1]};
}

void KerasOptimizer::step() {
  step(step_table(1, [&](int64_t) { return learning_rate_; })[0].to(params_.device()));
  count_steps(1);
}

// Tensor ops whose per-step scalars are 1-element tensors (`rate`, `decay_rate`), never host values.
// p + q * rate rounds as Keras's p - lr * q does: multiplying by -1 or 1 is exact.
void KerasOptimizer::step(const torch::Tensor& row) {
  torch::NoGradGuard no_grad;
  const torch::Tensor& g = grads_;
  const bool adam = config_.name == "adam" || config_.name == "adamw";
  if (adam && params_.is_cpu() && params_.scalar_type() == torch::kFloat) {
    adam_update(params_.data_ptr<float>(), g.data_ptr<float>(), slot_a_.data_ptr<float>(), slot_b_.data_ptr<float>(),
                params_.numel(), adam_step(row.data_ptr<float>()));
    return;
  }
  if (adam) {
    adam_update(params_, g, slot_a_, slot_b_, row, 1.0 - config_.beta_1, 1.0 - config_.beta_2, config_.epsilon,
                weight_decay(), scratch_, scratch_2_);
    return;
  }
  const torch::Tensor rate = row.narrow(0, 0, 1);
  if (config_.name == "sgd") {
    if (config_.momentum == 0) {
      params_.addcmul_(g, rate);
    } else {  // m = momentum * m - lr * g; nesterov: p += momentum * m - lr * g, else p += m
      slot_a_.mul_(config_.momentum).addcmul_(g, rate);
      if (config_.nesterov) {
        params_.add_(slot_a_, config_.momentum).addcmul_(g, rate);
      } else {
        params_.add_(slot_a_);
      }
    }
    return;
  }
  // rmsprop: v = rho v + (1 - rho) g^2; increment = lr g / sqrt(v + eps) (centered: v - mean_g^2 + eps)
  torch::mul_out(scratch_, g, g);
  slot_a_.mul_(config_.rho).add_(scratch_, 1.0 - config_.rho);
  if (config_.centered) {
    slot_c_.mul_(config_.rho).add_(g, 1.0 - config_.rho);
    torch::mul_out(scratch_, slot_c_, slot_c_);
    torch::sub_out(scratch_, slot_a_, scratch_);
    scratch_.add_(config_.epsilon);
  } else {
    torch::add_out(scratch_, slot_a_, config_.epsilon);
  }
  scratch_.sqrt_();
  torch::div_out(scratch_, g, scratch_);
  if (config_.momentum > 0) {  // momentum = momentum * m + increment; p -= momentum
    slot_b_.mul_(config_.momentum).addcmul_(scratch_, rate, -1.0);
    params_.sub_(slot_b_);
  } else {
    params_.addcmul_(scratch_, rate);
  }
}

double scheduled_learning_rate(const ScheduleConfig& s, double initial, int64_t step, int64_t total_steps) {
  const double t = static_cast<double>(step);
  if (s.name == "exponential_decay") {
    double p = t / static_cast<double>(s.decay_steps);
    return initial * std::pow(s.decay_rate, s.staircase ? std::floor(p) : p);
  }
  if (s.name == "cosine_decay") {  // keras.optimizers.schedules.CosineDecay, warm-up included
    const bool warmup = s.warmup_target > 0;
    if (warmup && step < s.warmup_steps)
      return initial + (s.warmup_target - initial) * t / static_cast<double>(s.warmup_steps);
    const double peak = warmup ? s.warmup_target : initial;
    const int64_t decay_steps = s.decay_steps > 0 ? s.decay_steps : std::max<int64_t>(total_steps - (warmup ? s.warmup_steps : 0), 1);
    const double done = std::min(t - (warmup ? static_cast<double>(s.warmup_steps) : 0.0), static_cast<double>(decay_steps));
    const double cosine = 0.5 * (1.0 + std::cos(M_PI * done / static_cast<double>(decay_steps)));
    return peak * ((1.0 - s.alpha) * cosine + s.alpha);
  }
  return initial;
}

std::vector<torch::Tensor> KerasOptimizer::state() const {
  return {slot_a_.clone(), slot_b_.clone(), slot_c_.clone(), torch::tensor(iterations_, torch::kLong)};
}

void KerasOptimizer::load_state(const std::vector<torch::Tensor>& state) {
  TORCH_CHECK(state.size() == 4 && state[0].numel() == slot_a_.numel(), "optimizer state does not match the model");
  torch::NoGradGuard no_grad;
  slot_a_.copy_(state[0]);
  slot_b_.copy_(state[1]);
  slot_c_.copy_(state[2]);
  iterations_ = state[3].item<int64_t>();
}

}  // namespace mnist
