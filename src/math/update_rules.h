// update_rules: Keras's optimizers as the update of one parameter, each written once
// (keras/src/optimizers/{adam,sgd,rmsprop}.py; AdamW's decay from optimizer.py). The CPU loops of
// optim.cpp (the autograd and fused CPU steps) and the CUDA kernels (fused_kernels.h) call these;
// optim.cpp's tensor form, for other devices and dtypes, does the same operations in the same
// order (tests/test_optim.cpp compares them bit for bit).
//
// Every operation rounds to float32 on its own, as TensorFlow's ops do: products go through mul(),
// which nvcc never fuses into an FMA, and the host files whose loops run these rules (optim.cpp,
// kernel_step.cpp) compile with -ffp-contract=off (CMakeLists.txt).
//
// To add an optimizer: a kind below, its constants in UpdateRule, its rule, a case in update(),
// and its slots and constants in optim.cpp (KerasOptimizer); its config keys in config.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "math/host_device.h"

namespace mnist {

MNIST_HD inline float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

enum class UpdateKind : int { adam, sgd, rmsprop };  // adamw is adam with a weight_decay

// What every parameter's update shares: the config's constants in the variables' dtype, as Keras
// casts them (float32 for the rules below; optim.cpp's tensor form also takes doubles). The
// per-step values (learning rate, Adam's bias corrections) come from a row of
// KerasOptimizer::step_table, read where the update runs, so a CUDA graph can replay many steps.
template <class T>
struct BasicUpdateRule {
  UpdateKind kind = UpdateKind::adam;
  T one_minus_beta_1 = 0, one_minus_beta_2 = 0;  // adam
  T epsilon = 0;                                 // adam, rmsprop
  T weight_decay = 0;                            // adamw; 0 otherwise
  T momentum = 0;                                // sgd, rmsprop; 0: none
  bool nesterov = false;                         // sgd
  T rho = 0, one_minus_rho = 0;                  // rmsprop
  bool centered = false;                         // rmsprop
};
using UpdateRule = BasicUpdateRule<float>;

// A step_table row: rate is -alpha_t for adam (the learning rate with Keras's bias corrections
// folded in) and -learning_rate otherwise; decay_rate is the learning rate AdamW's decay
// multiplies by (0 otherwise).
struct StepRow {
  float rate, decay_rate;
};

// m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2);  p -= (m alpha_t) / (sqrt(v) + epsilon),
// after AdamW's decay p -= (p weight_decay) learning_rate (adam: 0 and 0, and p - 0 is p).
MNIST_HD inline void adam(const UpdateRule& r, StepRow s, float& p, float& m, float& v, float g) {
  m = m + mul(g - m, r.one_minus_beta_1);
  v = v + mul(mul(g, g) - v, r.one_minus_beta_2);
  const float decayed = p - mul(mul(p, r.weight_decay), s.decay_rate);
  p = decayed + mul(m, s.rate) / (sqrtf(v) + r.epsilon);
}

// Plain: p -= g lr. Momentum: m = m momentum - g lr, then p += m, or with nesterov
// p += m momentum - g lr (the new m).
MNIST_HD inline void sgd(const UpdateRule& r, StepRow s, float& p, float& m, float g) {
  if (r.momentum == 0) {
    p = p + mul(g, s.rate);
    return;
  }
  m = mul(m, r.momentum) + mul(g, s.rate);
  p = p + (r.nesterov ? mul(m, r.momentum) + mul(g, s.rate) : m);
}

// v = rho v + (1 - rho) g^2;  increment = (lr g) / sqrt(v + epsilon), centered: sqrt(v - a^2 + epsilon)
// with a = rho a + (1 - rho) g;  p -= increment, or with momentum mo = momentum mo + increment, p -= mo.
MNIST_HD inline void rmsprop(const UpdateRule& r, StepRow s, float& p, float& v, float& mo, float& a, float g) {
  v = mul(r.rho, v) + mul(r.one_minus_rho, mul(g, g));
  float denominator = v + r.epsilon;
  if (r.centered) {
    a = mul(r.rho, a) + mul(r.one_minus_rho, g);
    denominator = v - mul(a, a) + r.epsilon;
  }
  const float increment = mul(-s.rate, g) / sqrtf(denominator);
  if (r.momentum > 0) {
    mo = mul(r.momentum, mo) + increment;
    p = p - mo;
  } else {
    p = p - increment;
  }
}

// One parameter p with gradient g and its slots (adam: m, v; sgd: momentum; rmsprop: velocity,
// momentum, average gradient; unused ones untouched).
MNIST_HD inline void update(const UpdateRule& r, StepRow s, float& p, float& slot_a, float& slot_b, float& slot_c, float g) {
  switch (r.kind) {
    case UpdateKind::adam: return adam(r, s, p, slot_a, slot_b, g);
    case UpdateKind::sgd: return sgd(r, s, p, slot_a, g);
    case UpdateKind::rmsprop: return rmsprop(r, s, p, slot_a, slot_b, slot_c, g);
  }
}

}  // namespace mnist
