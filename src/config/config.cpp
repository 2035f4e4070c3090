// config: JSON -> typed, validated Config and back, and the --set overrides. Every error names its
// JSON path. What a config holds is declared in config.h (each struct's fields()); the code here
// reads and writes any struct from that declaration.
#include "config/config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "config/errors.h"
#include "config/keras_names.h"
#include "config/user_input.h"

namespace mnist {
namespace {

using nlohmann::json;

// A config is at most five levels deep (model.layers[i].kernel_size[0]); anything far deeper is not one.
constexpr int kMaxConfigDepth = 32;
constexpr int64_t kMaxConfigBytes = int64_t{1} << 20;  // a config is a few KB

// Values as a user wrote them (-1, not -1.0), cut short when long.
std::string show(const json& v) { return show_json(v); }
std::string show_number(double v) { return show(std::floor(v) == v && std::fabs(v) < 9e15 ? json(int64_t(v)) : json(v)); }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

void require(bool ok, const std::string& path, const std::string& rule, const json& got) {
  if (!ok) throw ConfigError(path, rule + " (got " + show(got) + ")");
}

// "must be between 1 and 100000", "must be in [0, 1)", "must be > 0", ...
std::string says(const Rule& r) {
  std::string out;
  if (r.hi == kNoLimit) out = std::string(r.lo_open ? "must be > " : "must be >= ") + show_number(r.lo);
  else if (!r.lo_open && !r.hi_open) out = "must be between " + show_number(r.lo) + " and " + show_number(r.hi);
  else out = std::string("must be in ") + (r.lo_open ? "(" : "[") + show_number(r.lo) + ", " + show_number(r.hi) + (r.hi_open ? ")" : "]");
  return out + r.note;
}
void check(const Rule& r, double v, const std::string& path, const json& got) {
  const bool ok = std::isfinite(v) && (r.lo_open ? v > r.lo : v >= r.lo) && (r.hi_open ? v < r.hi : v <= r.hi);
  require(ok, path, says(r), got);
}

// Whether T lists fields (a struct of the config) or has Keras defaults per name (optimizer, schedule).
struct AnyField {
  template <class T>
  void operator()(const char*, T&, Rule = {}) const {}
};
template <class T, class = void>
struct HasFields : std::false_type {};
template <class T>
struct HasFields<T, std::void_t<decltype(T::fields(std::declval<T&>(), std::declval<AnyField&>()))>> : std::true_type {};
template <class T, class = void>
struct HasKerasDefaults : std::false_type {};
template <class T>
struct HasKerasDefaults<T, std::void_t<decltype(T::keras_defaults(T{}.name))>> : std::true_type {};

template <class E>
E enum_named(const std::string& word, const std::string& path) {
  std::vector<std::string> words;
  for (const auto& n : names_of(E{})) {
    if (word == n.name) return n.value;
    words.emplace_back(n.name);
  }
  throw ConfigError(path, "must be one of " + join(words) + " (got \"" + word + "\")");
}

// What a read checks: everything, or the shape alone (types, known keys) with the value rules left
// for a later read, so that a --set can repair a value the file got wrong (epochs 0, from_logits).
enum class Checks { all, shape };

template <class S>
void read_struct(const json& j, const std::string& path, std::string owner, S& out, Checks checks);
void read_layers(const json& v, const std::string& path, std::vector<LayerSpec>& out, Checks checks);

// One JSON value into one field, by the field's C++ type.
void read_value(const json& v, const std::string& path, const Rule& r, double& out) {
  if (!v.is_number()) throw ConfigError(path, "must be a number (got " + show(v) + ")");
  out = v.get<double>();
  check(r, out, path, v);
}
void read_value(const json& v, const std::string& path, const Rule& r, int64_t& out) {
  if (v.is_number_integer()) {
    out = v.get<int64_t>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 9e15) {
    out = static_cast<int64_t>(v.get<double>());
  } else {
    throw ConfigError(path, "must be an integer (got " + show(v) + ")");
  }
  check(r, static_cast<double>(out), path, v);
}
void read_value(const json& v, const std::string& path, const Rule&, uint64_t& out) {
  int64_t i = 0;
  read_value(v, path, at_least(0), i);
  out = static_cast<uint64_t>(i);
}
void read_value(const json& v, const std::string& path, const Rule&, bool& out) {
  if (!v.is_boolean()) throw ConfigError(path, "must be true or false (got " + show(v) + ")");
  out = v.get<bool>();
}
void read_value(const json& v, const std::string& path, const Rule&, std::string& out) {
  if (!v.is_string()) throw ConfigError(path, "must be a string (got " + show(v) + ")");
  out = v.get<std::string>();
}
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
void read_value(const json& v, const std::string& path, const Rule& r, E& out) {
  std::string word;
  read_value(v, path, r, word);
  out = enum_named<E>(word, path);
}
// Keras accepts an int or a pair for kernel_size, strides and pool_size, and writes strides=None for
// "as pool_size": null keeps the default.
void read_value(const json& v, const std::string& path, const Rule& r, Pair& out) {
  if (v.is_null()) {
  } else if (v.is_number_integer()) {
    out = {v.get<int64_t>(), v.get<int64_t>()};
  } else if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer()) {
    out = {v[0].get<int64_t>(), v[1].get<int64_t>()};
  } else {
    throw ConfigError(path, "must be an integer or a list of two integers [height, width] (got " + show(v) + ")");
  }
  check(r, static_cast<double>(std::min(out[0], out[1])), path, v);
  check(r, static_cast<double>(std::max(out[0], out[1])), path, v);
}
void read_value(const json& v, const std::string& path, const Rule&, TargetShape& out) {
  const bool ok = v.is_array() && (v.size() == 1 || v.size() == 3);
  int unknown = 0;
  out.dims.clear();
  for (size_t i = 0; ok && i < v.size(); ++i) {
    require(v[i].is_number_integer() && (v[i].get<int64_t>() >= 1 || v[i].get<int64_t>() == -1), path,
            "entries must be positive integers or one -1", v);
    out.dims.push_back(v[i].get<int64_t>());
    unknown += out.dims.back() == -1;
  }
  require(ok && unknown <= 1, path, "must be [features] or [height, width, channels] (Keras order), with at most one -1", v);
}
// Reads one JSON object through a struct's fields(): each field it lists is read when present
// (else keeps its default, or is an error when required), and any other key is an error: a typo
// such as "learning_rte" must fail loudly rather than silently train with the default.
class Reader {
 public:
  Reader(const json& j, std::string path, std::string owner, Checks checks)
      : j_(j), path_(std::move(path)), owner_(std::move(owner)), checks_(checks) {
    if (!j_.is_object()) throw ConfigError(path_.empty() ? "(top level)" : path_, "must be a JSON object (got " + show(j_) + ")");
  }
  template <class T>
  void operator()(const char* key, T& value, Rule rule = {}) {
    known_.emplace_back(key);
    if (!j_.contains(key)) {
      if (rule.required) throw ConfigError(path(key), "missing: " + owner_ + " needs \"" + key + "\"");
      return;
    }
    const json& v = j_.at(key);
    if constexpr (HasFields<T>::value) read_struct(v, path(key), path(key), value, checks_);
    else if constexpr (std::is_same_v<T, std::vector<LayerSpec>>) read_layers(v, path(key), value, checks_);
    else read_value(v, path(key), checks_ == Checks::all ? rule : Rule{}, value);
  }
  void reject_unknown() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (std::find(known_.begin(), known_.end(), it.key()) == known_.end())
        throw ConfigError(path(it.key()), "unknown key (known here: " + join(known_) + ")");
  }
  std::string path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  const json& j_;
  std::string path_, owner_;
  Checks checks_;
  std::vector<std::string> known_;
};

// `owner` names what needs a missing key ("a Dense layer"); an optimizer or schedule is named by its name.
template <class S>
void read_struct(const json& j, const std::string& path, std::string owner, S& out, Checks checks) {
  if constexpr (HasKerasDefaults<S>::value) {  // the name first: the other fields and their defaults follow from it
    Reader(j, path, owner, checks)("name", out.name);
    out = S::keras_defaults(out.name);
    owner = name_of(out.name);
  }
  Reader r(j, path, owner, checks);
  S::fields(out, r);
  r.reject_unknown();
}

template <class S>
json fields_json(const S& s);

// One field's value as JSON, by the field's C++ type.
template <class T>
json write_value(const T& v) {
  if constexpr (std::is_enum_v<T>) return name_of(v);
  else if constexpr (std::is_same_v<T, TargetShape>) return v.dims;
  else if constexpr (std::is_same_v<T, Pair>) return json::array({v[0], v[1]});
  else if constexpr (std::is_same_v<T, std::vector<LayerSpec>>) {
    json layers = json::array();
    for (const auto& l : v) layers.push_back(to_json(l));
    return layers;
  } else if constexpr (HasFields<T>::value) return fields_json(v);
  else return v;
}

// A struct as JSON, from its fields().
template <class S>
json fields_json(const S& s) {
  json j = json::object();
  S::fields(s, [&](const char* key, const auto& value, Rule = {}) { j[key] = write_value(value); });
  return j;
}

// The layer types, in LayerParams's order.
template <size_t... I>
std::vector<std::string> type_names(std::index_sequence<I...>) {
  return {std::variant_alternative_t<I, LayerParams>::kType...};
}
const std::vector<std::string> kLayerTypes = type_names(std::make_index_sequence<std::variant_size_v<LayerParams>>{});

template <size_t I = 0>
bool default_layer(const std::string& type, LayerParams& out) {
  if constexpr (I == std::variant_size_v<LayerParams>) {
    return false;
  } else {
    using Spec = std::variant_alternative_t<I, LayerParams>;
    if (type != Spec::kType) return default_layer<I + 1>(type, out);
    out = Spec{};
    return true;
  }
}

// A layer's name becomes `self.<name>` in the exported TorchScript: an identifier, and not a Python
// keyword, nor `forward` or `training` (a TorchScript module has them), nor `torch` (the library).
void check_layer_name(const std::string& name, const std::string& path) {
  require(!name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == std::string::npos &&
              !std::isdigit(static_cast<unsigned char>(name[0])),
          path, "must be letters, digits and _ (an identifier: it names the layer in exported models)", name);
  static const std::set<std::string> kReserved = {
      "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
      "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or",
      "pass", "raise", "return", "try", "while", "with", "yield", "forward", "training", "torch"};
  require(!kReserved.count(name), path,
          "is reserved in the exported TorchScript (a Python keyword, forward, training or torch): choose another name", name);
}

// One layer: its type picks the spec, whose fields() say which keys it takes.
LayerSpec read_layer(const json& j, const std::string& path, KerasLayerNames& names, Checks checks) {
  std::string type;
  Reader(j, path, "a layer", checks)("type", type);
  if (!j.contains("type")) throw ConfigError(path + ".type", "missing: every layer needs a \"type\" (" + join(kLayerTypes) + ")");
  LayerSpec layer;
  if (!default_layer(type, layer.params))
    throw ConfigError(path + ".type", "must be one of " + join(kLayerTypes) + " (got " + show(type) + ")");
  layer.name = names.next(type);
  Reader r(j, path, "a " + type + " layer", checks);
  r("type", type);
  r("name", layer.name);
  if (checks == Checks::all) check_layer_name(layer.name, r.path("name"));
  std::visit([&](auto& spec) { std::decay_t<decltype(spec)>::fields(spec, r); }, layer.params);
  r.reject_unknown();
  return layer;
}

void read_layers(const json& v, const std::string& path, std::vector<LayerSpec>& out, Checks checks) {
  if (!v.is_array() || v.empty()) throw ConfigError(path, "must be a non-empty list of layers (got " + show(v) + ")");
  KerasLayerNames names;
  out.clear();
  for (size_t i = 0; i < v.size(); ++i) out.push_back(read_layer(v[i], path + "[" + std::to_string(i) + "]", names, checks));
  if (checks == Checks::shape) return;
  std::set<std::string> unique;
  for (size_t i = 0; i < out.size(); ++i)
    if (!unique.insert(out[i].name).second)
      throw ConfigError(path + "[" + std::to_string(i) + "].name", "duplicate layer name \"" + out[i].name + "\"");
}

// Cross-field rules: the output layer must fit the dataset and the loss; callbacks must not select
// on the test set; Keras cannot reduce a scheduled learning rate either.
void check_consistency(const Config& c) {
  const TrainingConfig& t = c.training;
  auto needs_validation = [&](bool enabled, Monitor monitor_value, const std::string& path) {
    const std::string monitor = name_of(monitor_value);
    if (enabled && monitor.rfind("val_", 0) == 0 && t.validation_split == 0)
      throw ConfigError(path, "monitors " + monitor + " but training.validation_split is 0, so val_* would be the test set " +
                                  "and the test figure would no longer be honest: set validation_split (e.g. 0.1) or monitor loss");
  };
  needs_validation(t.early_stopping.enabled, t.early_stopping.monitor, "training.early_stopping.monitor");
  needs_validation(t.reduce_lr_on_plateau.enabled, t.reduce_lr_on_plateau.monitor, "training.reduce_lr_on_plateau.monitor");
  if (t.reduce_lr_on_plateau.enabled && t.lr_schedule.name != Schedule::constant)
    throw ConfigError("training.reduce_lr_on_plateau",
                      "cannot be combined with training.lr_schedule " + std::string(name_of(t.lr_schedule.name)) + " (Keras cannot set a scheduled rate either)");
  const LayerSpec& last = c.model.layers.back();
  const std::string path = "model.layers[" + std::to_string(c.model.layers.size() - 1) + "]";
  const auto* dense = std::get_if<DenseSpec>(&last.params);
  if (!dense) throw ConfigError(path, "the last layer must be a Dense layer with one unit per class");
  const int64_t classes = static_cast<int64_t>(class_names(c.dataset).size());
  if (dense->units != classes)
    throw ConfigError(path + ".units", "the output layer needs " + std::to_string(classes) + " units, one per " +
                                           name_of(c.dataset) + " class (got " + std::to_string(dense->units) + ")");
  const bool probabilities = dense->activation == Activation::sigmoid || dense->activation == Activation::softmax;
  if (!c.training.loss.from_logits && !probabilities)
    throw ConfigError("training.loss.from_logits",
                      "the output activation is " + to_string(dense->activation) +
                          ", so the model emits logits: set from_logits to true (or use a sigmoid/softmax output)");
}

// Split "model.layers[1].units" or "model.layers.1.units" into keys.
std::vector<std::string> split_path(const std::string& path) {
  std::string p;
  for (char ch : path) p += (ch == '[' || ch == ']') ? '.' : ch;
  std::vector<std::string> keys;
  std::stringstream ss(p);
  for (std::string k; std::getline(ss, k, '.');)
    if (!k.empty()) keys.push_back(k);
  return keys;
}

bool is_index(const std::string& k) { return !k.empty() && k.size() < 9 && k.find_first_not_of("0123456789") == std::string::npos; }

json* find_path(json& root, const std::vector<std::string>& keys, std::string& missing) {
  json* node = &root;
  std::string walked;
  for (const auto& k : keys) {
    if (node->is_object() && node->contains(k)) {
      node = &(*node)[k];
    } else if (node->is_array() && is_index(k) && std::stoul(k) < node->size()) {
      node = &(*node)[std::stoul(k)];
    } else {
      std::vector<std::string> have;
      if (node->is_object())
        for (auto it = node->begin(); it != node->end(); ++it) have.push_back(it.key());
      if (node->is_array()) have.push_back("indices 0.." + std::to_string(node->size() - 1));
      missing = "no key \"" + k + "\" under " + (walked.empty() ? "the top level" : walked) +
                (have.empty() ? "" : " (it has: " + join(have) + ")");
      return nullptr;
    }
    walked += (walked.empty() ? "" : ".") + k;
  }
  return node;
}

}  // namespace

bool layer_of_type(const std::string& type, LayerParams& out) { return default_layer(type, out); }
std::vector<std::string> layer_types() { return kLayerTypes; }

std::vector<std::string> class_names(Dataset dataset) {
  if (dataset == Dataset::fashion_mnist)
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  return {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
}

namespace {

Config read_config(const json& j, Checks checks) {
  Config c;
  read_struct(j, "", "the config", c, checks);
  if (checks == Checks::shape) return c;
  // A run directory is <name>-YYYYmmdd-HHMMSS[-N]: the name leaves room for that within a file name's 255 bytes.
  constexpr size_t kMaxName = 200;
  require(!c.name.empty() && c.name.size() <= kMaxName && c.name.find_first_of("/\\") == std::string::npos && c.name[0] != '.' &&
              std::none_of(c.name.begin(), c.name.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20; }),
          "name", "must be a non-empty name usable in a directory name (at most 200 bytes, no /, \\ or control characters, not starting with .)",
          c.name);
  check_consistency(c);
  return c;
}

}  // namespace

Config parse_config(const json& j) { return read_config(j, Checks::all); }

json to_json(const Config& c) { return fields_json(c); }

json to_json(const OptimizerConfig& o) { return fields_json(o); }

json to_json(const LayerSpec& l) {
  json j = {{"type", l.type()}, {"name", l.name}};
  std::visit([&](const auto& spec) { j.update(fields_json(spec)); }, l.params);
  return j;
}

namespace {

// The value of `--set KEY=TEXT`: TEXT as JSON, or else as a bare string.
json override_value(const std::string& text, const std::string& key, const std::string& shown) {
  try {
    return parse_json(text, kMaxConfigDepth);
  } catch (const JsonTooDeep&) {
    throw UsageError("--set " + shown + ": the value is not a single value");
  } catch (const JsonDuplicateKey&) {
    throw UsageError("--set " + shown + ": the value is not a single value");
  } catch (const json::exception&) {
    json value = text;  // bare words are strings: --set training.optimizer.name=sgd
    try {
      (void)value.dump();  // the resolved config is written as JSON, which needs UTF-8 (found by fuzz_config)
    } catch (const json::exception&) {
      throw UsageError("--set " + key.substr(0, 100) + "=...: the value is not valid UTF-8 text");
    }
    return value;
  }
}

// One `--set KEY.PATH=VALUE` applied to the config's JSON `j`: a single value of the same kind,
// or another optimizer or schedule by name (its own fields, with Keras's defaults).
void apply_override(json& j, const std::string& a) {
  const std::string shown = a.size() <= 100 ? a : a.substr(0, 100) + "...";  // as messages quote it
  const auto eq = a.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError("--set " + shown + ": expected KEY.PATH=VALUE, e.g. --set training.optimizer.learning_rate=0.01");
  const std::string key = a.substr(0, eq);
  const json value = override_value(a.substr(eq + 1), key, shown);
  const auto keys = split_path(key);
  std::string missing;
  json* target = keys.empty() ? nullptr : find_path(j, keys, missing);
  if (!target) throw UsageError("--set " + shown + ": " + (keys.empty() ? "empty key" : missing));
  if (target->is_structured() || value.is_structured())
    throw UsageError("--set " + shown + ": " + key + " is not a single value; set its fields one by one");
  const bool same_kind = (target->is_number() && value.is_number()) || (target->is_boolean() && value.is_boolean()) ||
                         (target->is_string() && value.is_string());
  if (!same_kind)
    throw UsageError("--set " + shown + ": " + key + " holds " + target->type_name() + " " + show(*target) + ", not " +
                     value.type_name() + " " + show(value));
  const bool optimizer = keys == std::vector<std::string>{"training", "optimizer", "name"};
  if (!optimizer && keys != std::vector<std::string>{"training", "lr_schedule", "name"}) {
    *target = value;
    return;
  }
  try {  // later --set change the new optimizer's or schedule's fields
    const std::string word = value.get<std::string>();
    if (optimizer) j["training"]["optimizer"] = to_json(OptimizerConfig::keras_defaults(enum_named<Optimizer>(word, key)));
    else j["training"]["lr_schedule"] = fields_json(ScheduleConfig::keras_defaults(enum_named<Schedule>(word, key)));
  } catch (const ConfigError& e) {
    throw UsageError(std::string("--set ") + shown + ": " + e.what());
  }
}

}  // namespace

// A --set inside a section that can be off (early_stopping, reduce_lr_on_plateau) turns it on, as
// the section written in a config file does, unless the command line sets its `enabled` itself.
void turn_on_set_sections(json& j, const std::vector<std::string>& assignments) {
  std::vector<std::vector<std::string>> set_keys;
  for (const auto& a : assignments) set_keys.push_back(split_path(a.substr(0, a.find('='))));
  for (const auto& keys : set_keys) {
    if (keys.size() < 2 || keys.back() == "enabled") continue;
    std::vector<std::string> enabled(keys.begin(), keys.end() - 1);
    enabled.push_back("enabled");
    std::string missing;
    json* flag = find_path(j, enabled, missing);
    if (flag && flag->is_boolean() && std::find(set_keys.begin(), set_keys.end(), enabled) == set_keys.end()) *flag = true;
  }
}

namespace {

// The resolved config `j` with the --set changes made, then checked whole.
Config overridden(json j, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) apply_override(j, a);
  turn_on_set_sections(j, assignments);
  return parse_config(j);
}

}  // namespace

Config apply_overrides(const Config& c, const std::vector<std::string>& assignments) {
  try {
    return overridden(to_json(c), assignments);
  } catch (const ConfigError& e) {
    throw e.in("after --set");
  }
}

Config parse_config_text(const std::string& text, const std::string& origin, const std::vector<std::string>& sets) {
  json j;
  try {
    j = parse_json(text, kMaxConfigDepth);
  } catch (const JsonTooDeep& e) {
    throw UsageError("config error in " + origin + ": " + e.what() + "; a config is a few levels deep");
  } catch (const JsonDuplicateKey& e) {
    throw UsageError("config error in " + origin + ": " + e.what() + "; keep one");
  } catch (const json::exception& e) {
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at line 3, column 5: ..."
    std::string what = e.what();
    auto pos = what.find("] ");
    throw UsageError("config error in " + origin + ": not valid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
  }
  try {
    if (sets.empty()) return parse_config(j);
    // The file's shape is checked first and its values after the --set changes, which may repair them.
    return overridden(to_json(read_config(j, Checks::shape)), sets);
  } catch (const ConfigError& e) {
    throw e.in("in " + origin + (sets.empty() ? "" : " with the --set changes"));
  }
}

Config load_config_file(const std::string& path, const std::vector<std::string>& sets) {
  std::string text;
  try {
    text = read_user_file(path, "config file", kMaxConfigBytes);
  } catch (const std::runtime_error& e) {
    throw UsageError(std::string(e.what()) + ": check the --config path");
  }
  return parse_config_text(text, path, sets);
}

}  // namespace mnist
