// keras_import: JSON get_weights() lists <-> named, transposed, shape-checked tensors.
#include "keras_import.h"

#include <fstream>
#include <sstream>

#include "model.h"

namespace mnist {
namespace {

using nlohmann::json;

// The shape of a rectangular nested list of numbers; throws with `where` on anything else. Keras
// weights are at most 4-D (a Conv2D kernel), so deeper nesting is refused before it can exhaust
// the stack.
std::vector<int64_t> list_shape(const json& j, const std::string& where, int depth = 0) {
  if (j.is_number()) return {};
  if (depth >= 8) throw std::runtime_error(where + " is nested deeper than any Keras weight (8 levels)");
  if (!j.is_array() || j.empty()) throw std::runtime_error(where + " is not a non-empty nested list of numbers");
  const std::vector<int64_t> inner = list_shape(j[0], where, depth + 1);
  for (const auto& e : j)
    if (list_shape(e, where, depth + 1) != inner) throw std::runtime_error(where + " is ragged: its rows differ in length");
  std::vector<int64_t> shape = {static_cast<int64_t>(j.size())};
  shape.insert(shape.end(), inner.begin(), inner.end());
  return shape;
}

void flatten_into(const json& j, std::vector<float>& out) {
  if (j.is_number()) {
    out.push_back(j.get<float>());
    return;
  }
  for (const auto& e : j) flatten_into(e, out);
}

std::string show(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

struct Expected {
  std::string layer;  // "dense_1"
  KerasWeight weight;
};

}  // namespace

std::map<std::string, torch::Tensor> read_keras_weights(const std::filesystem::path& file, const Config& config) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("Keras weights file " + file.string() + " cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return parse_keras_weights(text.str(), config, file.string());
}

std::map<std::string, torch::Tensor> parse_keras_weights(const std::string& text, const Config& config, const std::string& name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception&) {
    throw std::runtime_error("Keras weights file " + name + " is not valid JSON");
  }

  // The arrays Keras's model.get_weights() lists, in order: layer by layer, each layer's own order.
  std::vector<Expected> expected;
  const Model model(config.model, kImageShape, 0);
  for (const auto& layer : model->layers())
    for (const auto& w : layer->keras_weights()) expected.push_back({layer->name, w});
  std::string wanted;
  for (const auto& e : expected) wanted += (wanted.empty() ? "" : ", ") + e.layer + " " + e.weight.role + " " + show(e.weight.keras_shape);
  if (!j.is_array() || j.size() != expected.size())
    throw std::runtime_error(name + " holds " + (j.is_array() ? std::to_string(j.size()) + " arrays" : std::string("no list")) +
                             "; the config needs " + std::to_string(expected.size()) + " in this order: " + wanted);

  std::map<std::string, torch::Tensor> params;
  for (size_t i = 0; i < expected.size(); ++i) {
    const Expected& e = expected[i];
    const Shape& want = e.weight.keras_shape;
    const std::string where = name + ": weights[" + std::to_string(i) + "] (" + e.layer + " " + e.weight.role + ")";
    const auto got = list_shape(j[i], where);
    if (got.size() != want.size())
      throw std::runtime_error(where + " has shape " + show(got) + "; the config's " + e.layer + " needs " + show(want));
    for (size_t dim = 0; dim < got.size(); ++dim)
      if (got[dim] != want[dim])
        throw std::runtime_error(where + " has shape " + show(got) + "; the config's " + e.layer + " needs " + show(want) +
                                 " (dimension " + std::to_string(dim) + ": " + std::to_string(got[dim]) + " vs " +
                                 std::to_string(want[dim]) + ")");
    std::vector<float> values;
    flatten_into(j[i], values);
    torch::Tensor t = torch::tensor(values).view(want);
    if (!e.weight.to_torch.empty()) t = t.permute(e.weight.to_torch).contiguous();  // e.g. Dense [in, units] -> [units, in]
    params[e.layer + "." + e.weight.tensor] = t;
  }
  return params;
}

namespace {

// A tensor as nested JSON lists (float32 values, exact as doubles).
json nested_list(const torch::Tensor& t) {
  if (t.dim() == 0) return t.item<double>();
  json out = json::array();
  for (int64_t i = 0; i < t.size(0); ++i) out.push_back(nested_list(t[i]));
  return out;
}

}  // namespace

json keras_weights_json(ModelImpl& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, t] : model.state()) state[name] = t.detach().to(torch::kCPU, torch::kFloat);
  json out = json::array();
  for (const auto& layer : model.layers())
    for (const auto& w : layer->keras_weights()) {
      torch::Tensor t = state.at(layer->name + "." + w.tensor);
      if (!w.to_torch.empty()) {  // back to Keras's layout: the inverse permutation
        std::vector<int64_t> to_keras(w.to_torch.size());
        for (size_t i = 0; i < w.to_torch.size(); ++i) to_keras[static_cast<size_t>(w.to_torch[i])] = static_cast<int64_t>(i);
        t = t.permute(to_keras);
      }
      out.push_back(nested_list(t.contiguous()));
    }
  return out;
}

}  // namespace mnist
