// forward (compiled within cpu.cpp): fused_logits, the CPU step's forward run on samples, for
// evaluation.
#include "fused/forward.h"

#include "fused/cpu_loops.h"
#include "fused/dense_stack.h"

namespace mnist {

// The step's forward (CpuStep::forward) on samples instead of a batch: each thread takes a range
// of samples, kPiece at a time, packs their inputs as sparse rows and runs every layer on them
// with the same bands and loops. Each sample's sums are its own, whatever the range it falls in.
torch::Tensor fused_logits(const ModelImpl& model, const torch::Tensor& x) {
  // #lizard forgives: 64 lines, since it is compiled with the step (cpu.cpp), whose bits depend on
  // how GCC inlines there; cutting it apart is a change of the step's code, measured first.
  constexpr int64_t kPiece = 32;  // samples per pass through the layers: their outputs stay in L1/L2
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat || !dense_stack_unsupported(model).empty()) return {};
  struct Dense {
    std::vector<float> w, bias;  // [in, out] (Keras's layout) and [out], each followed by kSlack zeros; bias empty: none
    int64_t in = 0, out = 0;
    Activation activation = Activation::linear;
  };
  std::vector<Dense> dense;
  torch::NoGradGuard no_grad;
  auto copy = [](const torch::Tensor& keras, std::vector<float>& to) {
    to.assign(keras.data_ptr<float>(), keras.data_ptr<float>() + keras.numel());
    to.resize(to.size() + FusedDenseStep::kSlack, 0.0f);
  };
  for (const DenseLayer& d : dense_stack(model)) {
    for (const torch::Tensor& v : {d.weight, d.bias})
      if (v.defined() && (!v.device().is_cpu() || v.scalar_type() != torch::kFloat)) return {};
    Dense layer;
    layer.in = d.in, layer.out = d.out, layer.activation = d.activation;
    copy(d.weight.t().contiguous(), layer.w);
    if (d.bias.defined()) copy(d.bias.contiguous(), layer.bias);
    dense.push_back(std::move(layer));
  }
  const torch::Tensor images = x.contiguous().view({x.size(0), -1});
  const int64_t n = images.size(0), classes = dense.back().out;
  if (images.size(1) != dense[0].in) return {};
  torch::Tensor logits = torch::empty({n, classes}, images.options());
  const float* pixels = images.data_ptr<float>();
  float* out = logits.data_ptr<float>();
  int64_t widest = 0;
  for (const Dense& d : dense) widest = std::max({widest, d.in, d.out});
  at::parallel_for(0, n, /*grain_size=*/kPiece, [&](int64_t begin, int64_t end) {
    const auto piece = static_cast<size_t>(kPiece), wide = static_cast<size_t>(widest), slack = static_cast<size_t>(FusedDenseStep::kSlack);
    const auto cuts = static_cast<size_t>(kBands + 1);
    SparseRows rows{std::vector<int64_t>(piece + 1), std::vector<int32_t>(piece * wide), std::vector<float>(piece * wide),
                    std::vector<int64_t>(piece * cuts)};
    std::vector<float> below(piece * wide + slack), above(piece * wide + slack), partials(static_cast<size_t>(kBands - 1) * piece * wide);
    std::vector<int64_t> samples(piece);
    std::iota(samples.begin(), samples.end(), 0);
    for (int64_t first = begin; first < end; first += kPiece) {
      const int64_t len = std::min(kPiece, end - first);
      const float* a = pixels + first * dense[0].in;  // the layer's input, [len, in]
      for (size_t l = 0; l < dense.size(); ++l) {
        const Dense& d = dense[l];
        const bool hidden = l + 1 < dense.size();
        float* z = hidden ? (a == below.data() ? above.data() : below.data()) : out + first * classes;
        const float* bias = d.bias.empty() ? nullptr : d.bias.data();
        if (is_narrow(l, d.out)) {
          narrow_forward(z, d.w.data(), bias, a, d.in, d.out, /*begin=*/0, /*end=*/len);
          if (hidden) hidden_forward(z, len * d.out, d.activation);
        } else {
          const int64_t bands = band_count(d.in);
          pack_rows(a, d.in, len, bands, rows);
          for (int64_t b = 0; b < bands; ++b)
            band_forward(b == 0 ? z : partials.data() + (b - 1) * len * d.out, d.w.data(), b == 0 ? bias : nullptr, d.out,
                         samples.data(), len, rows, bands, b);
          sum_bands(z, partials.data(), bands, len * d.out, hidden, d.activation);
        }
        a = z;
      }
    }
  });
  return logits;
}

}  // namespace mnist
