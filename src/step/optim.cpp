// optim: Keras update rules (keras/src/optimizers/{adam,sgd,rmsprop}.py) on flat buffers.
#include "step/optim.h"

#include <cmath>

#include "math/simd.h"

namespace mnist {

// One loop per rule, so that each vectorises. The rule is copied to a local, which no store
// through p, g or the slots can alias.
MNIST_CLONES void apply_update(const UpdateRule& rule, StepRow row, float* __restrict p, const float* __restrict g,
                               float* __restrict slot_a, float* __restrict slot_b, float* __restrict slot_c, int64_t n) {
  const UpdateRule r = rule;
  switch (r.kind) {
    case UpdateKind::adam:
      for (int64_t i = 0; i < n; ++i) adam(r, row, p[i], slot_a[i], slot_b[i], g[i]);
      break;
    case UpdateKind::sgd:
      for (int64_t i = 0; i < n; ++i) sgd(r, row, p[i], slot_a[i], g[i]);
      break;
    case UpdateKind::rmsprop:
      for (int64_t i = 0; i < n; ++i) rmsprop(r, row, p[i], slot_a[i], slot_b[i], slot_c[i], g[i]);
      break;
  }
}

// update_rules.h's rules as tensor ops, for any device and float dtype: the same operations in
// the same order (never an op that fuses a product into a sum, such as add with alpha or
// addcmul), so float32 tensors get the loop's bits. The per-step scalars are 1-element tensors on
// the device (a step_table row), never host values; t1 and t2 are scratch shaped like p.
void apply_update(const BasicUpdateRule<double>& r, const torch::Tensor& row, const torch::Tensor& p, const torch::Tensor& g,
                  const torch::Tensor& slot_a, const torch::Tensor& slot_b, const torch::Tensor& slot_c, torch::Tensor t1,
                  torch::Tensor t2) {
  const torch::Tensor rate = row.narrow(0, 0, 1), decay_rate = row.narrow(0, 1, 1);
  switch (r.kind) {
    case UpdateKind::adam: {
      const torch::Tensor &m = slot_a, &v = slot_b;
      if (r.weight_decay != 0) {  // AdamW: p -= (p weight_decay) learning_rate
        torch::mul_out(t1, p, r.weight_decay).mul_(decay_rate);
        p.sub_(t1);
      }
      torch::sub_out(t1, g, m).mul_(r.one_minus_beta_1);
      m.add_(t1);
      torch::mul_out(t1, g, g).sub_(v).mul_(r.one_minus_beta_2);
      v.add_(t1);
      torch::sqrt_out(t1, v).add_(r.epsilon);
      torch::mul_out(t2, m, rate).div_(t1);
      p.add_(t2);
      return;
    }
    case UpdateKind::sgd: {
      const torch::Tensor& m = slot_a;
      torch::mul_out(t1, g, rate);  // g (-lr)
      if (r.momentum == 0) {
        p.add_(t1);
        return;
      }
      m.mul_(r.momentum).add_(t1);
      if (r.nesterov) {
        torch::mul_out(t2, m, r.momentum).add_(t1);
        p.add_(t2);
      } else {
        p.add_(m);
      }
      return;
    }
    case UpdateKind::rmsprop: {
      const torch::Tensor &v = slot_a, &mo = slot_b, &a = slot_c;
      torch::mul_out(t1, g, g).mul_(r.one_minus_rho);
      v.mul_(r.rho).add_(t1);
      if (r.centered) {
        torch::mul_out(t1, g, r.one_minus_rho);
        a.mul_(r.rho).add_(t1);
        torch::mul_out(t1, a, a);
        torch::sub_out(t2, v, t1).add_(r.epsilon);
      } else {
        torch::add_out(t2, v, r.epsilon);
      }
      t2.sqrt_();
      torch::mul_out(t1, g, rate).neg_().div_(t2);  // (lr g) / sqrt(...)
      if (r.momentum > 0) {
        mo.mul_(r.momentum).add_(t1);
        p.sub_(mo);
      } else {
        p.sub_(t1);
      }
      return;
    }
  }
}

namespace {

UpdateKind update_kind(Optimizer name) {
  switch (name) {
    case Optimizer::sgd: return UpdateKind::sgd;
    case Optimizer::rmsprop: return UpdateKind::rmsprop;
    default: return UpdateKind::adam;  // adam, adamw
  }
}

// The config's constants in the variables' dtype T, as Keras casts them.
template <class T>
BasicUpdateRule<T> update_rule(const OptimizerConfig& c) {
  BasicUpdateRule<T> r;
  r.kind = update_kind(c.name);
  r.one_minus_beta_1 = static_cast<T>(1.0 - c.beta_1);
  r.one_minus_beta_2 = static_cast<T>(1.0 - c.beta_2);
  r.epsilon = static_cast<T>(c.epsilon);
  r.weight_decay = c.name == Optimizer::adamw ? static_cast<T>(c.weight_decay) : T(0);
  r.momentum = static_cast<T>(c.momentum);
  r.nesterov = c.nesterov;
  r.rho = static_cast<T>(c.rho);
  r.one_minus_rho = static_cast<T>(1.0 - c.rho);
  r.centered = c.centered;
  return r;
}

}  // namespace

KerasOptimizer::KerasOptimizer(std::vector<torch::Tensor> params, OptimizerConfig config)
    : config_(std::move(config)), rule_(update_rule<float>(config_)), rule_in_double_(update_rule<double>(config_)), learning_rate_(config_.learning_rate) {
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
  const bool adam = rule_.kind == UpdateKind::adam;
  const bool in_double = params_.scalar_type() == torch::kDouble;
  for (int64_t i = 0; i < count; ++i) {
    const double lr = learning_rate(i);
    const int64_t t = iterations_ + i + 1;
    const double alpha = !adam     ? lr
                         : in_double ? keras_adam_alpha<double>(lr, config_.beta_1, config_.beta_2, t)
                                     : keras_adam_alpha<float>(lr, config_.beta_1, config_.beta_2, t);
    row[i][0] = -alpha;
    row[i][1] = rule_.weight_decay != 0 ? lr : 0.0;
  }
  return table.to(params_.scalar_type());
}

void KerasOptimizer::step() {
  step(step_table(1, [&](int64_t) { return learning_rate_; })[0].to(params_.device()));
  count_steps(1);
}

// Float32 on the CPU: the rule's loop; anything else: its tensor form.
void KerasOptimizer::step(const torch::Tensor& row) {
  torch::NoGradGuard no_grad;
  if (params_.is_cpu() && params_.scalar_type() == torch::kFloat) {
    const float* r = row.data_ptr<float>();
    apply_update(rule_, StepRow{r[0], r[1]}, params_.data_ptr<float>(), grads_.data_ptr<float>(), slot_a_.data_ptr<float>(),
                 slot_b_.data_ptr<float>(), slot_c_.data_ptr<float>(), params_.numel());
    return;
  }
  apply_update(rule_in_double(), row, params_, grads_, slot_a_, slot_b_, slot_c_, scratch_, scratch_2_);
}

double scheduled_learning_rate(const ScheduleConfig& s, double initial, int64_t step, int64_t total_steps) {
  const double t = static_cast<double>(step);
  if (s.name == Schedule::exponential_decay) {
    double p = t / static_cast<double>(s.decay_steps);
    return initial * std::pow(s.decay_rate, s.staircase ? std::floor(p) : p);
  }
  if (s.name == Schedule::cosine_decay) {  // keras.optimizers.schedules.CosineDecay, warm-up included
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

const torch::Tensor& OptimizerState::slot(const std::string& name) const {
  for (const auto& [slot_name, tensor] : slots)
    if (slot_name == name) return tensor;
  throw std::out_of_range("the optimizer has no slot " + name);
}

std::vector<std::string> slot_names(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::sgd: return {"momentum"};
    case Optimizer::rmsprop: return {"velocity", "momentum", "average_gradient"};
    default: return {"momentum", "velocity"};  // adam, adamw
  }
}

OptimizerState KerasOptimizer::state() const {
  const torch::Tensor* buffers[] = {&slot_a_, &slot_b_, &slot_c_};
  OptimizerState s;
  const std::vector<std::string> names = slot_names(config_.name);
  for (size_t k = 0; k < names.size(); ++k) s.slots.emplace_back(names[k], buffers[k]->clone());
  s.iterations = iterations_;
  return s;
}

void KerasOptimizer::load_state(const OptimizerState& state) {
  const std::vector<std::string> names = slot_names(config_.name);
  TORCH_CHECK(state.slots.size() == names.size(), "optimizer state does not match the optimizer");
  torch::Tensor* buffers[] = {&slot_a_, &slot_b_, &slot_c_};
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < names.size(); ++k) {
    TORCH_CHECK(state.slots[k].first == names[k] && state.slots[k].second.numel() == buffers[k]->numel(),
                "optimizer state does not match the model");
    buffers[k]->copy_(state.slots[k].second.reshape(buffers[k]->sizes()));
  }
  iterations_ = state.iterations;
}

}  // namespace mnist
