// keras_import: Keras's arrays (JSON lists, .weights.h5, .keras) <-> named, transposed, checked tensors.
#include "interop/keras_import.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <numeric>
#include <sstream>

#include "config/keras_names.h"
#include "config/user_input.h"
#include "interop/keras_config.h"
#include "interop/keras_files.h"
#include "model/model.h"

namespace mnist {
namespace {

using nlohmann::json;

// Bounds on what a file may claim before it is read: no MNIST model here comes near them.
constexpr int64_t kMaxWeightsBytes = int64_t{1} << 30;      // a .weights.h5 or .keras file
constexpr int64_t kMaxKerasConfigBytes = int64_t{16} << 20;      // a .keras archive's config.json

std::string show(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// One layer as Keras stores it: its slot in a .weights.h5 file ("dense_1") and its arrays in order.
struct LayerLayout {
  std::string slot;
  std::shared_ptr<Layer> layer;
  std::vector<KerasWeight> weights;
  std::string describe() const { return layer->name + " (" + layer->type + ")"; }
};

// Slots are numbered per class, as keras.src.saving.saving_lib names them: dense, dense_1, ...
std::vector<LayerLayout> keras_layout(const ModelImpl& model) {
  KerasLayerNames slots;
  std::vector<LayerLayout> layout;
  for (const auto& layer : model.layers()) layout.push_back({slots.next(layer->type), layer, layer->keras_weights()});
  return layout;
}

void check_shape(const std::vector<int64_t>& got, const std::vector<int64_t>& want, const std::string& where, const std::string& layer) {
  if (got.size() != want.size())
    throw std::runtime_error(where + " has shape " + show(got) + "; the config's " + layer + " needs " + show(want));
  for (size_t dim = 0; dim < got.size(); ++dim)
    if (got[dim] != want[dim])
      throw std::runtime_error(where + " has shape " + show(got) + "; the config's " + layer + " needs " + show(want) + " (dimension " +
                               std::to_string(dim) + ": " + std::to_string(got[dim]) + " vs " + std::to_string(want[dim]) + ")");
}

// One checked array as our tensor: finite values, in LibTorch's layout (e.g. Dense [in, units] -> [units, in]).
torch::Tensor to_tensor(std::vector<float> values, const KerasWeight& w, const std::string& where) {
  for (float v : values)
    if (!std::isfinite(v)) throw std::runtime_error(where + " holds " + std::to_string(v) + ": weights must be finite numbers");
  torch::Tensor t = torch::tensor(values).view(w.keras_shape);
  if (!w.to_torch.empty()) t = t.permute(w.to_torch).contiguous();
  return t;
}

// The inverse: our tensor in Keras's layout.
KerasArray to_keras(const torch::Tensor& tensor, const KerasWeight& w) {
  torch::Tensor t = tensor.detach().to(torch::kCPU, torch::kFloat);
  if (!w.to_torch.empty()) {
    std::vector<int64_t> to_keras(w.to_torch.size());
    for (size_t i = 0; i < w.to_torch.size(); ++i) to_keras[static_cast<size_t>(w.to_torch[i])] = static_cast<int64_t>(i);
    t = t.permute(to_keras);
  }
  t = t.contiguous();
  return {w.keras_shape, std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel())};
}

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

json nested_list(const float* values, const std::vector<int64_t>& shape, size_t dim = 0) {
  if (dim == shape.size()) return static_cast<double>(*values);  // float32 values, exact as doubles
  int64_t stride = 1;
  for (size_t d = dim + 1; d < shape.size(); ++d) stride *= shape[d];
  json out = json::array();
  for (int64_t i = 0; i < shape[dim]; ++i) out.push_back(nested_list(values + i * stride, shape, dim + 1));
  return out;
}

}  // namespace

bool is_keras_model_file(const std::filesystem::path& file) { return file.extension() == ".keras"; }
bool is_keras_weights_h5_file(const std::filesystem::path& file) { return file.extension() == ".h5"; }

Params read_keras_weights(const std::filesystem::path& file, const Config& config) {
  if (is_keras_model_file(file)) {
    const std::string bytes = read_user_file(file, "Keras model file", kMaxWeightsBytes);
    const auto entries = read_zip_entries(bytes, {"model.weights.h5"}, file.string(), kMaxWeightsBytes);
    if (!entries.count("model.weights.h5")) throw std::runtime_error(file.string() + " holds no model.weights.h5: not a Keras 3 .keras file");
    return parse_keras_weights_h5(entries.at("model.weights.h5"), config, file.string() + ": model.weights.h5");
  }
  if (is_keras_weights_h5_file(file))
    return parse_keras_weights_h5(read_user_file(file, "Keras weights file", kMaxWeightsBytes), config, file.string());
  if (file.extension() != ".json")
    throw std::runtime_error("Keras weights file " + file.string() + ": name it .json (get_weights() list), .weights.h5 or .keras");
  return parse_keras_weights(read_user_file(file, "Keras weights file", kMaxWeightsBytes), config, file.string());
}

Params parse_keras_weights(const std::string& text, const Config& config, const std::string& name) {
  // The arrays Keras's model.get_weights() lists, in order: layer by layer, each layer's own order.
  const Model model(config.model, kImageShape, 0);
  std::vector<std::pair<const LayerLayout*, const KerasWeight*>> expected;
  const auto layout = keras_layout(*model);
  for (const auto& l : layout)
    for (const auto& w : l.weights) expected.emplace_back(&l, &w);
  std::string wanted;
  int64_t numbers = 0;
  for (const auto& [l, w] : expected) {
    wanted += (wanted.empty() ? "" : ", ") + l->layer->name + " " + w->role + " " + show(w->keras_shape);
    numbers += std::accumulate(w->keras_shape.begin(), w->keras_shape.end(), int64_t{1}, std::multiplies<>());
  }
  json j;
  try {
    // A list of at most 4-D arrays, of about the config's numbers: room for a shape error to be named
    // (one array too large), none for a file's worth of values.
    j = parse_json(text, /*max_depth=*/8, /*max_values=*/2 * numbers + (1 << 20));
  } catch (const JsonTooDeep&) {
    throw std::runtime_error(name + " is nested deeper than any Keras weight (8 levels)");
  } catch (const JsonTooLarge&) {
    throw std::runtime_error(name + " holds far more numbers than the config's " + std::to_string(numbers) + " weights (" + wanted + ")");
  } catch (const JsonDuplicateKey&) {
    throw std::runtime_error(name + " holds an object, not a list of arrays (" + wanted + ")");
  } catch (const json::exception&) {
    throw std::runtime_error("Keras weights file " + name + " is not valid JSON");
  }
  if (!j.is_array() || j.size() != expected.size())
    throw std::runtime_error(name + " holds " + (j.is_array() ? std::to_string(j.size()) + " arrays" : std::string("no list")) +
                             "; the config needs " + std::to_string(expected.size()) + " in this order: " + wanted);

  Params params;
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& [l, w] = expected[i];
    const std::string where = name + ": weights[" + std::to_string(i) + "] (" + l->layer->name + " " + w->role + ")";
    check_shape(list_shape(j[i], where), w->keras_shape, where, l->layer->name);
    std::vector<float> values;
    flatten_into(j[i], values);
    params[l->layer->name + "." + w->tensor] = to_tensor(std::move(values), *w, where);
  }
  return params;
}

Params parse_keras_weights_h5(const std::string& bytes, const Config& config, const std::string& name) {
  const Model model(config.model, kImageShape, 0);
  const auto layout = keras_layout(*model);
  std::vector<const LayerLayout*> with_weights;
  std::vector<KerasH5Request> requests;
  for (const auto& l : layout) {
    if (l.weights.empty()) continue;
    KerasH5Request request{l.slot, l.describe(), {}};
    for (const auto& w : l.weights) request.shapes.push_back(w.keras_shape);
    with_weights.push_back(&l);
    requests.push_back(std::move(request));
  }
  const KerasH5Contents file = read_keras_weights_h5(bytes, name, requests);

  Params params;
  for (size_t k = 0; k < with_weights.size(); ++k) {
    const LayerLayout& l = *with_weights[k];
    if (!file.layers[k]) {
      std::string wanted;
      for (const auto& w : l.weights) wanted += (wanted.empty() ? "" : ", ") + w.role + " " + show(w.keras_shape);
      throw std::runtime_error(name + " has no group layers/" + l.slot + "/vars for the config's " + l.describe() + " (" + wanted +
                               "): the file was saved from another model");
    }
    for (size_t i = 0; i < l.weights.size(); ++i) {
      const KerasWeight& w = l.weights[i];
      const std::string where = name + ": layers/" + l.slot + "/vars/" + std::to_string(i) + " (" + l.layer->name + " " + w.role + ")";
      check_shape((*file.layers[k])[i].shape, w.keras_shape, where, l.layer->name);
      params[l.layer->name + "." + w.tensor] = to_tensor((*file.layers[k])[i].values, w, where);
    }
  }
  // Arrays for a layer the config does not have: the file belongs to a larger model.
  for (const auto& slot : file.slots_with_arrays)
    if (std::none_of(layout.begin(), layout.end(), [&](const LayerLayout& l) { return l.slot == slot; }))
      throw std::runtime_error(name + " holds arrays for layers/" + slot + ", a layer the config does not have: the file was saved from another model");
  return params;
}

KerasModel read_keras_model(const std::filesystem::path& file) {
  return parse_keras_model(read_user_file(file, "Keras model file", kMaxWeightsBytes), file.string());
}

KerasModel parse_keras_model(const std::string& bytes, const std::string& name) {
  const auto entries = read_zip_entries(bytes, {"config.json", "model.weights.h5"}, name, kMaxWeightsBytes);
  for (const char* entry : {"config.json", "model.weights.h5"})
    if (!entries.count(entry)) throw std::runtime_error(name + " holds no " + entry + ": not a Keras 3 .keras file");
  if (entries.at("config.json").size() > static_cast<size_t>(kMaxKerasConfigBytes))
    throw std::runtime_error(name + ": config.json is larger than any model config (" + std::to_string(kMaxKerasConfigBytes) + " bytes)");
  KerasModel model;
  KerasConfig converted = config_from_keras(entries.at("config.json"), name + ": config.json");
  model.config = std::move(converted.config);
  model.notes = std::move(converted.notes);
  model.params = parse_keras_weights_h5(entries.at("model.weights.h5"), model.config, name + ": model.weights.h5");
  return model;
}

json keras_weights_json(const ModelImpl& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, t] : model.state()) state[name] = t;
  json out = json::array();
  for (const auto& l : keras_layout(model))
    for (const auto& w : l.weights) {
      const KerasArray a = to_keras(state.at(l.layer->name + "." + w.tensor), w);
      out.push_back(nested_list(a.values.data(), a.shape));
    }
  return out;
}

std::string keras_weights_h5(const ModelImpl& model, const std::string& model_name) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, t] : model.state()) state[name] = t;
  std::vector<KerasLayerArrays> layers;
  for (const auto& l : keras_layout(model)) {
    KerasLayerArrays stored{l.slot, l.layer->name, {}};
    for (const auto& w : l.weights) stored.arrays.push_back(to_keras(state.at(l.layer->name + "." + w.tensor), w));
    layers.push_back(std::move(stored));
  }
  return write_keras_weights_h5(layers, model_name);
}

std::string keras_model_archive(const ModelImpl& model, const Config& config) {
  return write_zip({{"metadata.json", keras_metadata_json().dump()},
                    {"config.json", keras_config_json(config).dump()},
                    {"model.weights.h5", keras_weights_h5(model, config.name)}});
}

}  // namespace mnist
