// Keras update rules, one or two steps computed by hand in double, and the flat-buffer plumbing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "model/model.h"
#include "step/optim.h"

using namespace mnist;

namespace {
// One parameter tensor with value `p0` and a fixed gradient `g` each step.
struct OneParam {
  torch::Tensor p;
  KerasOptimizer opt;
  OneParam(std::vector<double> p0, const OptimizerConfig& cfg)
      : p(torch::tensor(p0, torch::kDouble).requires_grad_()), opt({p}, cfg) {}
  void step(const std::vector<double>& g) {
    opt.zero_grad();
    (p * torch::tensor(g, torch::kDouble)).sum().backward();  // d/dp = g
    opt.step();
  }
  double at(int64_t i) { return p[i].item<double>(); }
};
}  // namespace

TEST(Optim, KerasAdamTwoStepsByHand) {
  OptimizerConfig cfg;  // adam, lr 1e-3, beta 0.9 / 0.999, epsilon 1e-7
  const std::vector<double> p0 = {1.0, -2.0, 0.5}, g = {0.5, -0.1, 1e-6};
  OneParam t(p0, cfg);
  std::vector<double> m(3, 0), v(3, 0), p = p0;
  for (int step = 1; step <= 2; ++step) {
    t.step(g);
    const double alpha = 1e-3 * std::sqrt(1 - std::pow(0.999, step)) / (1 - std::pow(0.9, step));
    for (size_t i = 0; i < 3; ++i) {
      m[i] += (g[i] - m[i]) * 0.1;
      v[i] += (g[i] * g[i] - v[i]) * 0.001;
      p[i] -= alpha * m[i] / (std::sqrt(v[i]) + 1e-7);
      EXPECT_NEAR(t.at(static_cast<int64_t>(i)), p[i], 1e-15) << "step " << step << " index " << i;
    }
  }
  EXPECT_EQ(t.opt.iterations(), 2);
  // Epsilon placement matters: PyTorch's Adam (eps added to sqrt(v_hat)) moves the small-gradient
  // weight by lr * g / (|g| + eps) = 9.1e-4 in the first step; Keras by 2.4e-4.
  OneParam first(p0, cfg);
  first.step(g);
  const double keras_move = p0[2] - first.at(2), torch_move = 1e-3 * 1e-6 / (1e-6 + 1e-7);
  EXPECT_NEAR(keras_move, 1e-3 * std::sqrt(0.001) / 0.1 * 1e-7 / (std::sqrt(1e-15) + 1e-7), 1e-15);
  EXPECT_LT(keras_move, 0.3 * torch_move);
}

// alpha_t as TensorFlow 2.21 computes it in Keras 3.15.1's Adam.update_step (a tf.function of
// `iterations`; float32 bits read back from TensorFlow). The exact value, rounded once, differs
// in the first steps: by 6.6e-6 relative at step 1.
TEST(Optim, AdamStepSizeIsTensorFlowsFloat32Value) {
  const std::vector<std::pair<int64_t, uint32_t>> tensorflow = {
      {1, 0x39a5cb17}, {2, 0x3976beb9}, {3, 0x3953d29d}, {10, 0x3920a11a},
      {100, 0x39a1c6c2}, {1000, 0x3a507326}, {10000, 0x3a8311ad}, {20000, 0x3a83126f}};
  for (const auto& [t, bits] : tensorflow) {
    const float ours = keras_adam_alpha_float32(0.001, 0.9, 0.999, t);
    uint32_t ours_bits;
    std::memcpy(&ours_bits, &ours, sizeof ours_bits);
    EXPECT_EQ(ours_bits, bits) << "step " << t << ": " << ours;
  }
  const double exact = 0.001 * std::sqrt(1 - 0.999) / (1 - 0.9);
  EXPECT_NE(static_cast<float>(exact), keras_adam_alpha_float32(0.001, 0.9, 0.999, 1));

  // The table a float32 run trains with holds exactly that value.
  auto p = torch::zeros({3}, torch::kFloat).requires_grad_();
  KerasOptimizer opt({p}, OptimizerConfig{});
  const torch::Tensor table = opt.step_table(3, [](int64_t) { return 0.001; });
  EXPECT_EQ(table[1][0].item<float>(), -keras_adam_alpha_float32(0.001, 0.9, 0.999, 2));
}

TEST(Optim, KerasSgdPlainMomentumAndNesterov) {
  OptimizerConfig cfg;
  cfg.name = Optimizer::sgd;
  cfg.learning_rate = 0.1;
  OneParam plain({1.0}, cfg);
  plain.step({2.0});
  EXPECT_DOUBLE_EQ(plain.at(0), 1.0 - 0.1 * 2.0);

  cfg.momentum = 0.9;
  OneParam mom({1.0}, cfg);
  mom.step({2.0});  // m = -0.2; p = 0.8
  mom.step({1.0});  // m = 0.9 * -0.2 - 0.1 = -0.28; p = 0.52
  EXPECT_NEAR(mom.at(0), 0.52, 1e-15);

  cfg.nesterov = true;
  OneParam nes({1.0}, cfg);
  nes.step({2.0});  // m = -0.2; p += 0.9 * m - 0.1 * g = -0.38
  EXPECT_NEAR(nes.at(0), 0.62, 1e-15);
}

TEST(Optim, KerasRmspropPlainCenteredAndMomentum) {
  OptimizerConfig cfg;
  cfg.name = Optimizer::rmsprop;
  OneParam plain({1.0}, cfg);
  plain.step({0.5});  // v = 0.1 * 0.25 = 0.025; p -= 1e-3 * 0.5 / sqrt(0.025 + 1e-7)
  EXPECT_NEAR(plain.at(0), 1.0 - 1e-3 * 0.5 / std::sqrt(0.025 + 1e-7), 1e-15);

  cfg.centered = true;
  OneParam centered({1.0}, cfg);
  centered.step({0.5});  // mean_g = 0.05; denominator = 0.025 - 0.0025 + 1e-7
  EXPECT_NEAR(centered.at(0), 1.0 - 1e-3 * 0.5 / std::sqrt(0.0225 + 1e-7), 1e-15);

  cfg.centered = false;
  cfg.momentum = 0.5;
  OneParam mom({1.0}, cfg);
  mom.step({0.5});
  mom.step({0.5});  // v2 = 0.9 * 0.025 + 0.025 = 0.0475
  const double inc1 = 1e-3 * 0.5 / std::sqrt(0.025 + 1e-7), inc2 = 1e-3 * 0.5 / std::sqrt(0.0475 + 1e-7);
  EXPECT_NEAR(mom.at(0), 1.0 - inc1 - (0.5 * inc1 + inc2), 1e-15);
}

TEST(Optim, FlatBuffersHoldTheParametersAndTheirAutogradGradients) {
  ModelConfig cfg{{{"flatten", FlattenSpec{}},
                   {"dense", DenseSpec{16, Activation::relu, true}},
                   {"dense_1", DenseSpec{10, Activation::sigmoid, true}}}};
  Model reference(cfg, kImageShape, 3), flat(cfg, kImageShape, 3);
  KerasOptimizer opt(flat->parameters(), OptimizerConfig{});
  EXPECT_EQ(opt.flat_params().numel(), flat->parameter_count());
  const auto x = torch::rand({8, 1, 28, 28});
  for (int round = 0; round < 2; ++round) {  // the second round checks zero_grad resets in place
    opt.zero_grad();
    flat->logits(x).pow(2).sum().backward();
    const auto grads = torch::autograd::grad({reference->logits(x).pow(2).sum()}, reference->parameters());
    int64_t offset = 0;
    for (size_t i = 0; i < grads.size(); ++i) {
      const auto n = grads[i].numel();
      EXPECT_TRUE(opt.flat_grads().narrow(0, offset, n).allclose(grads[i].flatten(), 1e-5, 1e-6)) << "tensor " << i;
      EXPECT_EQ(flat->parameters()[i].grad().data_ptr<float>(), opt.flat_grads().data_ptr<float>() + offset);
      offset += n;
    }
  }
  // A step moves the module's own parameters (they are views of the flat buffer).
  const auto before = flat->parameters()[0].clone();
  opt.step();
  EXPECT_FALSE(flat->parameters()[0].equal(before));
}

TEST(Optim, KerasAdamWDecaysTheWeightsBeforeTheAdamStep) {
  OptimizerConfig cfg;
  cfg.name = Optimizer::adamw;
  cfg.weight_decay = 0.1;
  cfg.learning_rate = 0.01;
  const std::vector<double> p0 = {1.0, -2.0}, g = {0.5, -0.1};
  OneParam t(p0, cfg);
  t.step(g);
  for (size_t i = 0; i < 2; ++i) {  // keras AdamW: p -= p * wd * lr, then Adam's first step
    const double decayed = p0[i] - p0[i] * 0.1 * 0.01;
    const double m = 0.1 * g[i], v = 0.001 * g[i] * g[i];
    const double alpha = 0.01 * std::sqrt(0.001) / 0.1;
    EXPECT_NEAR(t.at(static_cast<int64_t>(i)), decayed - alpha * m / (std::sqrt(v) + 1e-7), 1e-15);
  }
}

// Every optimizer configuration the rules distinguish.
std::vector<std::pair<std::string, OptimizerConfig>> every_rule() {
  std::vector<std::pair<std::string, OptimizerConfig>> out;
  auto add = [&](const std::string& what, const std::function<void(OptimizerConfig&)>& set) {
    OptimizerConfig c;
    set(c);
    out.emplace_back(what, c);
  };
  add("adam", [](OptimizerConfig&) {});
  add("adamw", [](OptimizerConfig& c) { c.name = Optimizer::adamw; c.weight_decay = 0.05; });
  add("sgd", [](OptimizerConfig& c) { c.name = Optimizer::sgd; c.learning_rate = 0.01; });
  add("sgd, momentum", [](OptimizerConfig& c) { c.name = Optimizer::sgd; c.learning_rate = 0.01; c.momentum = 0.9; });
  add("sgd, nesterov", [](OptimizerConfig& c) { c.name = Optimizer::sgd; c.learning_rate = 0.01; c.momentum = 0.9; c.nesterov = true; });
  add("rmsprop", [](OptimizerConfig& c) { c.name = Optimizer::rmsprop; });
  add("rmsprop, centered", [](OptimizerConfig& c) { c.name = Optimizer::rmsprop; c.centered = true; });
  add("rmsprop, momentum", [](OptimizerConfig& c) { c.name = Optimizer::rmsprop; c.momentum = 0.5; });
  return out;
}

// Float parameters on the CPU take the rule's loop (update_rules.h, as the fused step does);
// double parameters take the tensor ops that CUDA runs. Both are Keras's rule: they agree to
// float precision.
TEST(Optim, FloatCpuLoopMatchesTheTensorOpsRuleInDouble) {
  for (const auto& [name, cfg] : every_rule()) {
    auto gen = at::detail::createCPUGenerator(3);
    const torch::Tensor p0 = torch::randn({1000}, gen, torch::kDouble), g = torch::randn({5, 1000}, gen, torch::kDouble) * 1e-3;
    torch::Tensor pd = p0.clone().requires_grad_(), pf = p0.to(torch::kFloat).requires_grad_();
    KerasOptimizer od({pd}, cfg), of({pf}, cfg);
    for (int64_t step = 0; step < 5; ++step) {
      od.zero_grad();
      of.zero_grad();
      (pd * g[step]).sum().backward();
      (pf * g[step].to(torch::kFloat)).sum().backward();
      od.step();
      of.step();
    }
    const auto moved = (pd - p0).detach(), diff = (pf.detach().to(torch::kDouble) - pd.detach()).abs();
    EXPECT_GT(moved.abs().max().item<double>(), 1e-5) << name;  // five steps moved the weights
    EXPECT_LT(diff.max().item<double>(), 1e-6) << name;         // float rounding of values of order 1
  }
}

// The tensor ops (the autograd step's update on CUDA and for doubles) and the CPU's loop compute
// each rule in the same order of operations: on float32 they agree bit for bit. One step from
// parameters of the step's own size, so that any other rounding shows in p. The one allowed
// difference is sqrt's: PyTorch's CPU sqrt goes through MKL where LibTorch has it, which is not
// correctly rounded (CUDA's sqrtf and the loop's are), so p (and rmsprop's momentum) may differ
// only where torch::sqrt differs from the correctly rounded root.
TEST(Optim, UpdateRulesTensorOpsAndCpuLoopGiveTheSameFloat32Bits) {
  int seed = 5;
  for (const auto& [name, cfg] : every_rule()) {
    auto gen = at::detail::createCPUGenerator(++seed);
    const int64_t n = 4099;  // not a multiple of any vector width: the loops' tails run too
    torch::Tensor p = torch::randn({n}, gen) * 1e-3, a = torch::randn({n}, gen) * 1e-2, b = torch::rand({n}, gen) * 1e-4,
                  c = torch::randn({n}, gen) * 1e-3;
    if (cfg.name == Optimizer::rmsprop) a = torch::rand({n}, gen) * 1e-4;  // velocity >= 0 (and > the mean gradient's square)
    const torch::Tensor g = torch::randn({n}, gen) * 1e-2;
    torch::Tensor p2 = p.clone(), a2 = a.clone(), b2 = b.clone(), c2 = c.clone(), t1 = torch::empty({n}), t2 = torch::empty({n});
    auto param = p.clone().requires_grad_();
    KerasOptimizer optimizer({param}, cfg);
    const torch::Tensor row = optimizer.step_table(3, [&](int64_t) { return cfg.learning_rate; })[2];  // step 3
    const StepRow scalars{row[0].item<float>(), row[1].item<float>()};
    apply_update(optimizer.rule(), scalars, p.data_ptr<float>(), g.data_ptr<float>(), a.data_ptr<float>(), b.data_ptr<float>(),
                 c.data_ptr<float>(), n);
    apply_update(optimizer.rule_in_double(), row, p2, g, a2, b2, c2, t1, t2);
    EXPECT_FALSE(torch::equal(p, p2.clone().zero_())) << name;
    // Where the rule takes a square root: of v (adam), of the denominator (rmsprop); none (sgd).
    torch::Tensor root = torch::ones({n});
    if (cfg.name == Optimizer::adam || cfg.name == Optimizer::adamw) root = b.clone();
    if (cfg.name == Optimizer::rmsprop) root = cfg.centered ? (a - c * c) + static_cast<float>(cfg.epsilon) : a + static_cast<float>(cfg.epsilon);
    const torch::Tensor sqrt_differs = torch::sqrt(root).ne(root.to(torch::kDouble).sqrt().to(torch::kFloat));
    auto expect_same = [&, name = name](const torch::Tensor& loop, const torch::Tensor& ops, const char* what, bool after_sqrt) {
      const torch::Tensor differs = loop.ne(ops);
      const torch::Tensor unexplained = after_sqrt ? differs.logical_and(sqrt_differs.logical_not()) : differs;
      EXPECT_EQ(unexplained.sum().item<int64_t>(), 0)
          << name << ": " << what << " differs (max " << (loop - ops).abs().max().item<float>() << ")";
      if (after_sqrt && sqrt_differs.any().item<bool>())
        std::cout << "note: " << name << ": this LibTorch's CPU sqrt is not correctly rounded at "
                  << sqrt_differs.sum().item<int64_t>() << " of " << n << " values; " << what << " differs at "
                  << differs.sum().item<int64_t>() << " of them\n";
    };
    expect_same(p, p2, "p", true);
    expect_same(a, a2, "slot a", false);
    expect_same(b, b2, "slot b", cfg.name == Optimizer::rmsprop);
    expect_same(c, c2, "slot c", false);
  }
}

TEST(Optim, SchedulesFollowKerasFormulas) {
  ScheduleConfig exp;
  exp.name = Schedule::exponential_decay;
  exp.decay_steps = 100;
  exp.decay_rate = 0.5;
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(exp, 0.1, 0, 1000), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(exp, 0.1, 150, 1000), 0.1 * std::pow(0.5, 1.5));
  exp.staircase = true;
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(exp, 0.1, 150, 1000), 0.05);

  ScheduleConfig cos;
  cos.name = Schedule::cosine_decay;
  cos.alpha = 0.1;  // decay_steps 0: the whole run
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(cos, 0.1, 0, 1000), 0.1);
  EXPECT_NEAR(scheduled_learning_rate(cos, 0.1, 500, 1000), 0.1 * (0.9 * 0.5 + 0.1), 1e-15);
  EXPECT_NEAR(scheduled_learning_rate(cos, 0.1, 5000, 1000), 0.01, 1e-15);  // held at alpha * lr
  cos.alpha = 0;
  cos.warmup_steps = 100;
  cos.warmup_target = 1.0;
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(cos, 0.1, 50, 1100), 0.55);  // linear warm-up
  EXPECT_DOUBLE_EQ(scheduled_learning_rate(cos, 0.1, 100, 1100), 1.0);
  EXPECT_NEAR(scheduled_learning_rate(cos, 0.1, 600, 1100), 0.5, 1e-15);  // half-way down 1000 steps
}
