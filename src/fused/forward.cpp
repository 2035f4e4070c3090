// forward (compiled within cpu.cpp): fused_logits, the CPU step's forward run on samples, for
// evaluation.
#include "fused/forward.h"

#include "fused/cpu_loops.h"
#include "fused/dense_stack.h"

namespace mnist {

// A Dense layer's weights in Keras's [in, out] layout and its bias, copied from the model, each
// followed by kSlack zeros (the loops read rows as whole vectors); bias empty: none.
struct DenseCopy {
  std::vector<float> weight, bias;
  int64_t in = 0, out = 0;
  Activation activation = Activation::linear;
  DenseWeights view() const { return {weight.data(), bias.empty() ? nullptr : bias.data(), in, out, activation}; }
};

// `model`'s Dense stack, copied; empty where a tensor is not a float tensor on the CPU.
std::vector<DenseCopy> copy_dense_stack(const ModelImpl& model) {
  std::vector<DenseCopy> dense;
  const auto copy = [](const torch::Tensor& keras, std::vector<float>& to) {
    to.assign(keras.data_ptr<float>(), keras.data_ptr<float>() + keras.numel());
    to.resize(to.size() + FusedDenseStep::kSlack, 0.0f);
  };
  for (const DenseLayer& d : dense_stack(model)) {
    for (const torch::Tensor& v : {d.weight, d.bias})
      if (v.defined() && (!v.device().is_cpu() || v.scalar_type() != torch::kFloat)) return {};
    DenseCopy layer;
    layer.in = d.in, layer.out = d.out, layer.activation = d.activation;
    copy(d.weight.t().contiguous(), layer.weight);
    if (d.bias.defined()) copy(d.bias.contiguous(), layer.bias);
    dense.push_back(std::move(layer));
  }
  return dense;
}

// The step's forward (cpu_loops.h dense_forward) on samples instead of a batch: each thread takes
// a range of samples, kPiece at a time, and runs every layer on them, the first on their pixels
// packed as sparse rows. Each sample's sums are its own, whatever the range it falls in.
torch::Tensor fused_logits(const ModelImpl& model, const torch::Tensor& x) {
  constexpr int64_t kPiece = 32;  // samples per pass through the layers: their outputs stay in L1/L2
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat || !dense_stack_unsupported(model).empty()) return {};
  torch::NoGradGuard no_grad;
  const std::vector<DenseCopy> dense = copy_dense_stack(model);
  const torch::Tensor images = x.contiguous().view({x.size(0), -1});
  if (dense.empty() || images.size(1) != dense[0].in) return {};
  const int64_t n = images.size(0), classes = dense.back().out;
  torch::Tensor logits = torch::empty({n, classes}, images.options());
  const float* pixels = images.data_ptr<float>();
  float* out = logits.data_ptr<float>();
  int64_t widest = 0;
  for (const DenseCopy& d : dense) widest = std::max({widest, d.in, d.out});
  at::parallel_for(0, n, /*grain_size=*/kPiece, [&](int64_t begin, int64_t end) {
    const auto piece = static_cast<size_t>(kPiece), wide = static_cast<size_t>(widest), slack = static_cast<size_t>(FusedDenseStep::kSlack);
    SparseRows rows{std::vector<int64_t>(piece + 1), std::vector<int32_t>(piece * wide), std::vector<float>(piece * wide),
                    std::vector<int64_t>(piece * static_cast<size_t>(kBands + 1))};
    std::vector<float> below(piece * wide + slack), above(piece * wide + slack), partials(static_cast<size_t>(kBands - 1) * piece * wide);
    std::vector<int64_t> samples(piece);
    std::iota(samples.begin(), samples.end(), 0);
    for (int64_t first = begin; first < end; first += kPiece) {
      const int64_t len = std::min(kPiece, end - first);
      const float* a = pixels + first * dense[0].in;  // the layer's input, [len, in]
      for (size_t l = 0; l < dense.size(); ++l) {
        const bool hidden = l + 1 < dense.size();
        float* z = hidden ? (a == below.data() ? above.data() : below.data()) : out + first * classes;
        dense_forward(l, hidden, dense[l].view(), LayerInput{a, &rows, samples.data()}, len, z, partials.data());
        a = z;
      }
    }
  });
  return logits;
}

}  // namespace mnist
