// Keras's own files (.weights.h5, .keras): files real Keras 3.15.1 wrote (tests/data/keras, made by
// tests/python/make_keras_fixtures.py) read without Keras, our writers read back bit for bit, and
// every damaged or foreign file refused with the file, layer and array named. The round trips
// through real Keras itself are the Keras.Files test (tests/python/keras_files.py).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#ifdef MNIST_WITH_KERAS_FILES
#include <hdf5.h>
#endif

#include "config/config.h"
#include "config/keras_names.h"
#include "helpers.h"
#include "interop/keras_config.h"
#include "interop/keras_files.h"
#include "interop/keras_import.h"
#include "model/model.h"

using namespace mnist;
using namespace testing_helpers;

namespace {

const fs::path kFixtures = "tests/data/keras";

#ifndef MNIST_WITH_KERAS_FILES
#define SKIP_WITHOUT_KERAS_FILES() GTEST_SKIP() << "built with -DMNIST_WITH_KERAS_FILES=OFF: no HDF5/libzip"
#else
#define SKIP_WITHOUT_KERAS_FILES()
#endif

void expect_same_params(const Params& a, const Params& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }
}

Params state_of(const Model& model) {
  Params out;
  for (const auto& [name, t] : model->state()) out[name] = t.detach().clone();
  return out;
}

// Every layer type a config can name, with parameters away from their defaults.
Config every_layer_config() {
  return parse_config_text(R"({"name": "every_layer", "model": {"layers": [
      {"type": "Conv2D", "filters": 3, "kernel_size": [3, 2], "strides": 2, "padding": "same", "activation": "relu"},
      {"type": "BatchNormalization", "momentum": 0.9, "epsilon": 0.01},
      {"type": "Activation", "activation": "tanh"},
      {"type": "AveragePooling2D", "pool_size": 2, "padding": "same"},
      {"type": "Conv2D", "filters": 4, "kernel_size": 3, "use_bias": false},
      {"type": "MaxPooling2D", "pool_size": 2, "strides": 1},
      {"type": "BatchNormalization", "center": false, "scale": false},
      {"type": "Dropout", "rate": 0.3},
      {"type": "Flatten"},
      {"type": "Dense", "units": 12, "activation": "sigmoid"},
      {"type": "Reshape", "target_shape": [2, 2, 3]},
      {"type": "GlobalAveragePooling2D"},
      {"type": "Dense", "units": 10, "activation": "softmax", "use_bias": false}]},
    "training": {"optimizer": {"name": "rmsprop", "learning_rate": 0.003, "rho": 0.8, "momentum": 0.5, "centered": true},
                 "loss": {"from_logits": false}}})",
                           "every_layer");
}

// The config's model with random values in every tensor, BatchNormalization's statistics included.
Model random_model(const Config& config) {
  Model model(config.model, kImageShape, 1);
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : model->state()) t.copy_(torch::rand(t.sizes()) + 0.5);
  return model;
}

std::string slurp_fixture(const std::string& name) { return slurp(kFixtures / name); }

// Expects parse_keras_weights_h5 to refuse `bytes` with one line holding `expected`.
void expect_h5_refused(const std::string& bytes, const Config& config, const std::string& expected) {
  try {
    parse_keras_weights_h5(bytes, config, "w.weights.h5");
    ADD_FAILURE() << "accepted; expected: " << expected;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(KerasFiles, SlotsAreNamedAsKerasNamesThem) {
  // keras.src.utils.naming.to_snake_case, the name of each layer's group in a .weights.h5 file
  EXPECT_EQ(keras_snake_case("Dense"), "dense");
  EXPECT_EQ(keras_snake_case("Conv2D"), "conv2d");
  EXPECT_EQ(keras_snake_case("MaxPooling2D"), "max_pooling2d");
  EXPECT_EQ(keras_snake_case("AveragePooling2D"), "average_pooling2d");
  EXPECT_EQ(keras_snake_case("GlobalAveragePooling2D"), "global_average_pooling2d");
  EXPECT_EQ(keras_snake_case("BatchNormalization"), "batch_normalization");
  // numbered within a model from a class's second layer on, as a config's unnamed layers are too
  KerasLayerNames names;
  EXPECT_EQ(names.next("Dense"), "dense");
  EXPECT_EQ(names.next("Conv2D"), "conv2d");
  EXPECT_EQ(names.next("Dense"), "dense_1");
  EXPECT_EQ(names.next("MaxPooling2D"), "max_pooling2d");
  EXPECT_EQ(names.next("Dense"), "dense_2");
}

TEST(KerasFiles, ReadsTheFilesKerasWrote) {
  SKIP_WITHOUT_KERAS_FILES();
  const KerasModel keras = read_keras_model(kFixtures / "tiny-cnn.keras");
  const Config& c = keras.config;
  EXPECT_EQ(c.name, "tiny_cnn");
  std::vector<std::string> types, names;
  for (const auto& l : c.model.layers) types.push_back(l.type()), names.push_back(l.name);
  EXPECT_EQ(types, (std::vector<std::string>{"Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "Dropout", "Flatten", "Dense"}));
  EXPECT_EQ(names.front(), "conv2d");
  const auto& conv = std::get<Conv2DSpec>(c.model.layers[0].params);
  EXPECT_EQ(conv.filters, 2);
  EXPECT_EQ(conv.kernel_size, (Pair{3, 3}));
  EXPECT_EQ(conv.strides, (Pair{2, 2}));
  EXPECT_EQ(conv.padding, Padding::same);
  EXPECT_DOUBLE_EQ(std::get<BatchNormalizationSpec>(c.model.layers[1].params).momentum, 0.9);
  EXPECT_EQ(std::get<ActivationSpec>(c.model.layers[2].params).activation, Activation::relu);
  EXPECT_DOUBLE_EQ(std::get<DropoutSpec>(c.model.layers[4].params).rate, 0.25);
  const auto& dense = std::get<DenseSpec>(c.model.layers[6].params);
  EXPECT_EQ(dense.units, 10);
  EXPECT_EQ(dense.activation, Activation::softmax);
  EXPECT_FALSE(dense.use_bias);
  // compile(): AdamW(learning_rate=0.002), stored by Keras as the float32 0.0020000000949949026.
  EXPECT_EQ(c.training.optimizer.name, Optimizer::adamw);
  EXPECT_EQ(c.training.optimizer.learning_rate, 0.002);
  EXPECT_TRUE(keras.notes.empty());

  // The same arrays from the archive, from model.save_weights()'s file and from get_weights() as JSON.
  expect_same_params(keras.params, read_keras_weights(kFixtures / "tiny-cnn.weights.h5", c));
  expect_same_params(keras.params, read_keras_weights(kFixtures / "tiny-cnn.json", c));
  EXPECT_EQ(keras.params.at("batch_normalization.running_var").size(0), 2);
}

TEST(KerasFiles, OurFilesReadBackBitForBit) {
  SKIP_WITHOUT_KERAS_FILES();
  const Config config = every_layer_config();
  const Model model = random_model(config);
  const Params state = state_of(model);

  expect_same_params(parse_keras_weights_h5(keras_weights_h5(*model, config.name), config, "ours.weights.h5"), state);

  const KerasModel back = parse_keras_model(keras_model_archive(*model, config), "ours.keras");
  expect_same_params(back.params, state);
  EXPECT_EQ(to_json(back.config)["model"], to_json(config)["model"]);
  EXPECT_EQ(back.config.name, config.name);
  EXPECT_EQ(to_json(back.config)["training"]["optimizer"], to_json(config)["training"]["optimizer"]);
  EXPECT_TRUE(back.notes.empty());
}

TEST(KerasFiles, ConfigJsonIsKerassSequentialSerialisation) {
  const Config paper = load_config_file("configs/paper.json");
  const nlohmann::json k = keras_config_json(paper);
  EXPECT_EQ(k["class_name"], "Sequential");
  const auto& layers = k["config"]["layers"];
  ASSERT_EQ(layers.size(), 4u);  // InputLayer, then the config's three
  EXPECT_EQ(layers[0]["config"]["batch_shape"], nlohmann::json::parse("[null, 28, 28]"));  // Flatten(input_shape=(28, 28))
  EXPECT_EQ(layers[2]["class_name"], "Dense");
  EXPECT_EQ(layers[2]["config"]["units"], 100);
  EXPECT_EQ(layers[3]["config"]["activation"], "sigmoid");
  EXPECT_EQ(k["compile_config"]["optimizer"]["class_name"], "Adam");
  EXPECT_EQ(k["compile_config"]["loss"]["config"]["from_logits"], false);
  // A model that does not start with Flatten takes images with their channel axis.
  EXPECT_EQ(keras_config_json(every_layer_config())["config"]["layers"][0]["config"]["batch_shape"],
            nlohmann::json::parse("[null, 28, 28, 1]"));
}

TEST(KerasFiles, WhatDoesNotCarryOverIsANote) {
  const std::string keras = R"({"class_name": "Sequential", "config": {"name": "m", "layers": [
      {"class_name": "Flatten", "config": {"name": "flatten"}},
      {"class_name": "Dense", "config": {"name": "dense", "units": 10, "activation": "softmax"}}]},
    "compile_config": {"optimizer": {"class_name": "Adagrad", "config": {"learning_rate": 0.01}}, "loss": "mse"}})";
  const KerasConfig converted = config_from_keras(keras, "m.keras: config.json");
  EXPECT_EQ(converted.config.training.optimizer.name, Optimizer::adam);
  ASSERT_EQ(converted.notes.size(), 2u);
  EXPECT_NE(converted.notes[0].find("optimizer Adagrad has no counterpart here"), std::string::npos);
  EXPECT_NE(converted.notes[1].find("loss mse has no counterpart here"), std::string::npos);
}

TEST(KerasFiles, BadFilesNameTheFileLayerAndArray) {
  SKIP_WITHOUT_KERAS_FILES();
  const Config config = parse_config_text(R"({"model": {"layers": [{"type": "Flatten"},
      {"type": "Dense", "units": 4, "activation": "relu"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}})", "t");
  const KerasArray kernel{{784, 4}, std::vector<float>(784 * 4, 0.5f)}, bias{{4}, std::vector<float>(4, 0.f)},
      kernel_1{{4, 10}, std::vector<float>(40, 0.5f)}, bias_1{{10}, std::vector<float>(10, 0.f)};
  auto h5 = [&](std::vector<KerasLayerArrays> layers) { return write_keras_weights_h5(layers, "m"); };
  const std::string good = h5({{"flatten", "flatten", {}}, {"dense", "dense", {kernel, bias}}, {"dense_1", "dense_1", {kernel_1, bias_1}}});
  ASSERT_NO_THROW(parse_keras_weights_h5(good, config, "good.weights.h5"));

  auto refused = [&](const std::string& bytes, const std::string& expected) { expect_h5_refused(bytes, config, expected); };
  refused("", "w.weights.h5 is empty");
  refused("not HDF5 at all", "w.weights.h5 is not an HDF5 file, or is truncated");
  refused(good.substr(0, good.size() / 2), "w.weights.h5");
  refused(h5({{"dense", "dense", {kernel}}, {"dense_1", "dense_1", {kernel_1, bias_1}}}),
          "w.weights.h5: layers/dense/vars holds 1 arrays where the config's dense (Dense) needs 2");
  refused(h5({{"dense", "dense", {{{784, 5}, std::vector<float>(784 * 5)}, bias}}, {"dense_1", "dense_1", {kernel_1, bias_1}}}),
          "w.weights.h5: layers/dense/vars/0 (dense kernel) has shape [784, 5]; the config's dense needs [784, 4] (dimension 1: 5 vs 4)");
  refused(h5({{"dense", "dense", {kernel, {{4}, {0.f, INFINITY, 0.f, 0.f}}}}, {"dense_1", "dense_1", {kernel_1, bias_1}}}),
          "w.weights.h5: layers/dense/vars/1 (dense bias) holds inf: weights must be finite numbers");
  refused(h5({{"conv2d", "conv2d", {kernel, bias}}, {"dense_1", "dense_1", {kernel_1, bias_1}}}),
          "w.weights.h5 has no group layers/dense/vars for the config's dense (Dense)");
  refused(h5({{"dense", "dense", {kernel, bias}}, {"dense_1", "dense_1", {kernel_1, bias_1}}, {"dense_2", "dense_2", {bias_1}}}),
          "w.weights.h5 holds arrays for layers/dense_2, a layer the config does not have");

  // .keras archives: the zip, its entries and the model config inside.
  auto archive = [&](const std::string& config_json, bool with_weights = true) {
    std::vector<std::pair<std::string, std::string>> entries = {{"metadata.json", "{}"}, {"config.json", config_json}};
    if (with_weights) entries.emplace_back("model.weights.h5", good);
    return write_zip(entries);
  };
  auto model_refused = [&](const std::string& bytes, const std::string& expected) {
    try {
      parse_keras_model(bytes, "m.keras");
      ADD_FAILURE() << "accepted; expected: " << expected;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  };
  const std::string sequential = keras_config_json(config).dump();
  ASSERT_NO_THROW(parse_keras_model(archive(sequential), "m.keras"));
  model_refused(good, "m.keras is not a zip archive");
  model_refused(archive(sequential, false), "m.keras holds no model.weights.h5");
  std::string corrupt = archive(sequential);
  corrupt[corrupt.find("\"Sequential\"") + 1] ^= 0x20;  // one byte of config.json, inside its stored data
  model_refused(corrupt, "m.keras: config.json is corrupt");
  auto with_layer = [&](const std::string& layer) {
    nlohmann::json k = keras_config_json(config);
    k["config"]["layers"][2] = nlohmann::json::parse(layer);
    return archive(k.dump());
  };
  model_refused(with_layer(R"({"class_name": "LSTM", "config": {"name": "lstm", "units": 4}})"),
                "m.keras: config.json: layers[2] (LSTM 'lstm') is not a layer type this program has");
  model_refused(with_layer(R"({"class_name": "Dense", "config": {"name": "dense", "units": 4, "kernel_regularizer": {"class_name": "L2"}}})"),
                "m.keras: config.json: layers[2] (Dense 'dense'): kernel_regularizer is set, which is not supported here");
  model_refused(with_layer(R"({"class_name": "Dense", "config": {"name": "dense", "units": 4, "dtype": "float16"}})"),
                "m.keras: config.json: layers[2] (Dense 'dense'): dtype \"float16\" is not supported (only float32)");
  model_refused(with_layer(R"({"class_name": "Flatten", "config": {"name": "flatten", "data_format": "channels_first"}})"),
                "m.keras: config.json: layers[2] (Flatten 'flatten'): data_format = \"channels_first\" is not supported (only \"channels_last\")");
  model_refused(with_layer(R"({"class_name": "Conv2D", "config": {"name": "c", "filters": 2, "kernel_size": 3, "dilation_rate": [2, 2]}})"),
                "m.keras: config.json: layers[2] (Conv2D 'c'): dilation_rate = [2,2] is not supported (only [1,1])");
  model_refused(with_layer(R"({"class_name": "BatchNormalization", "config": {"name": "bn", "renorm": true}})"),
                "m.keras: config.json: layers[2] (BatchNormalization 'bn'): renorm = true is not supported (only false)");
  model_refused(with_layer(R"({"class_name": "BatchNormalization", "config": {"name": "bn", "axis": 1}})"),
                "m.keras: config.json: layers[2] (BatchNormalization 'bn'): axis = 1 is not supported (only the channels axis, -1)");
  model_refused(with_layer(R"({"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "gelu"}})"),
                "m.keras: config.json, as our config: config error at model.layers[1].activation");
  nlohmann::json functional = keras_config_json(config);
  functional["class_name"] = "Functional";
  model_refused(archive(functional.dump()), "m.keras: config.json: the model is a Functional; only Sequential models");
  nlohmann::json colour = keras_config_json(config);
  colour["config"]["layers"][0]["config"]["batch_shape"] = nlohmann::json::parse("[null, 32, 32, 3]");
  model_refused(archive(colour.dump()), "m.keras: config.json: the model's input is [null,32,32,3]; models here take 28x28 images");
  model_refused(archive("[1, 2"), "m.keras: config.json is not valid JSON");
  std::string twice = sequential;  // "class_name" written twice: which one Keras meant is unknowable
  twice.insert(1, R"("class_name": "Functional", )");
  model_refused(archive(twice), "m.keras: config.json: the key \"class_name\" appears twice in one object");
  model_refused(archive(R"({"class_name": "Sequential", "config": {"name": "m", "layers": [{"class_name": "Dense", "config": 7}]},
                           "compile_config": {"optimizer": 5}})"),
                "m.keras: config.json");
}

#ifdef MNIST_WITH_KERAS_FILES
namespace {

// `bytes` (an HDF5 file) with the link `leaf` of group `group` replaced by what make(group, leaf)
// creates there, through libhdf5 itself (in memory).
std::string rewritten_h5(const std::string& bytes, const std::string& group, const std::string& leaf,
                         const std::function<void(hid_t, const char*)>& make) {
  const hid_t access = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(access, /*increment=*/1 << 20, /*backing_store=*/0);
  H5Pset_file_image(access, const_cast<char*>(bytes.data()), bytes.size());
  const hid_t file = H5Fopen("rewritten.h5", H5F_ACC_RDWR, access);
  const hid_t g = H5Gopen2(file, group.c_str(), H5P_DEFAULT);
  EXPECT_GE(H5Ldelete(g, leaf.c_str(), H5P_DEFAULT), 0);
  make(g, leaf.c_str());
  H5Gclose(g);
  H5Fflush(file, H5F_SCOPE_GLOBAL);
  std::string out(static_cast<size_t>(H5Fget_file_image(file, nullptr, 0)), '\0');
  H5Fget_file_image(file, out.data(), out.size());
  H5Fclose(file);
  H5Pclose(access);
  return out;
}

// A float32 dataset of `n` values at `leaf`, made with the dataset-creation list `create`.
void make_dataset(hid_t group, const char* leaf, hsize_t n, hid_t create) {
  const hid_t space = H5Screate_simple(1, &n, nullptr);
  const hid_t dataset = H5Dcreate2(group, leaf, H5T_IEEE_F32LE, space, H5P_DEFAULT, create, H5P_DEFAULT);
  EXPECT_GE(dataset, 0);
  H5Dclose(dataset);
  H5Sclose(space);
}

}  // namespace
#endif

TEST(KerasFiles, AModelFileNeverReadsOutsideItself) {
  SKIP_WITHOUT_KERAS_FILES();
#ifdef MNIST_WITH_KERAS_FILES
  // The host's files a hostile weights file points at: a text file, and an HDF5 file whose /x
  // has the shape the config expects of dense_1's bias ([10]).
  const TempDir dir;
  const std::string secret = (dir.path / "secret.txt").string(), other = (dir.path / "other.h5").string();
  write_file(secret, std::string(400, 'S'));
  {
    const hid_t file = H5Fcreate(other.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t n = 10;
    const hid_t space = H5Screate_simple(1, &n, nullptr);
    const hid_t x = H5Dcreate2(file, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const std::vector<float> sevens(10, 7.0f);
    H5Dwrite(x, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, sevens.data());
    H5Dclose(x), H5Sclose(space), H5Fclose(file);
  }
  const Config config = load_config_file("configs/quick.json");
  const Model model(config.model, kImageShape, 1);
  const std::string good = keras_weights_h5(*model, config.name);
  ASSERT_NO_THROW(parse_keras_weights_h5(good, config, "w.weights.h5"));

  auto refused = [&](const std::string& bytes, const std::string& expected) {
    expect_h5_refused(bytes, config, expected);
    expect_h5_refused(bytes, config, "a model file must hold its own data");
  };
  const std::string vars = "layers/dense_1/vars";
  refused(rewritten_h5(good, vars, "1", [&](hid_t g, const char* leaf) {  // external storage: the values are the secret's bytes
            const hid_t create = H5Pcreate(H5P_DATASET_CREATE);
            H5Pset_external(create, secret.c_str(), 0, 40);
            make_dataset(g, leaf, 10, create);
            H5Pclose(create);
          }),
          "w.weights.h5: layers/dense_1/vars/1 keeps its values in external files");
  refused(rewritten_h5(good, vars, "1", [&](hid_t g, const char* leaf) {  // a virtual dataset: the other file's /x
            const hid_t create = H5Pcreate(H5P_DATASET_CREATE);
            const hsize_t n = 10;
            const hid_t space = H5Screate_simple(1, &n, nullptr);
            H5Pset_virtual(create, space, other.c_str(), "/x", space);
            make_dataset(g, leaf, 10, create);
            H5Sclose(space), H5Pclose(create);
          }),
          "w.weights.h5: layers/dense_1/vars/1 is a virtual dataset");
  refused(rewritten_h5(good, vars, "1", [&](hid_t g, const char* leaf) { H5Lcreate_external(other.c_str(), "/x", g, leaf, H5P_DEFAULT, H5P_DEFAULT); }),
          "w.weights.h5: layers/dense_1/vars/1 is an external link");
  refused(rewritten_h5(good, "layers", "dense_1", [&](hid_t g, const char* leaf) {  // a whole layer's group elsewhere
            H5Lcreate_external(other.c_str(), "/", g, leaf, H5P_DEFAULT, H5P_DEFAULT);
          }),
          "w.weights.h5: layers/dense_1 is an external link");
  refused(rewritten_h5(good, vars, "1", [&](hid_t g, const char* leaf) { H5Lcreate_soft("/layers/dense/vars/1", g, leaf, H5P_DEFAULT, H5P_DEFAULT); }),
          "w.weights.h5: layers/dense_1/vars/1 is a soft link");
  // The same file with the bias stored in it reads.
  ASSERT_NO_THROW(parse_keras_weights_h5(rewritten_h5(good, vars, "1", [&](hid_t g, const char* leaf) { make_dataset(g, leaf, 10, H5P_DEFAULT); }),
                                         config, "w.weights.h5"));
#endif
}
