// Models out and in: TorchScript round trips (C++ and Python), Keras weight import against an
// independent computation, and the MNIST-style preprocessing of image files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <random>

#include "config/errors.h"
#include "helpers.h"
#include "interop/export.h"
#include "interop/keras_import.h"
#include "interop/checkpoint.h"
#include "interop/rundir.h"
#include "train/train.h"
#ifdef MNIST_WITH_OPENCV  // predict reads images with OpenCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "report/predict.h"
#endif

using namespace mnist;
using namespace testing_helpers;

namespace {

Config small_config(Activation out = Activation::sigmoid, bool bias = true) {
  Config c;
  c.name = "small";
  c.model.layers = {{"flatten", FlattenSpec{}},
                    {"dense", DenseSpec{8, Activation::relu, bias}},
                    {"dense_1", DenseSpec{10, out, true}}};
  return c;
}

// The Pythons whose torch loads our exports in Python.PyTorchLoadsOurExports: the PyTorch of the
// build's own virtual environment (scripts/setup.sh), the CUDA one (scripts/cuda-build.sh) and
// Debian's python3-torch 1.13 (apt-get install python3-torch), where each is installed.
const std::vector<std::string> kPythons = {".venv/torch/bin/python", ".venv/torch-cuda/bin/python", "/usr/bin/python3"};

bool imports_torch(const std::string& python) {
  return std::filesystem::exists(python) && std::system((python + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace

TEST(Export, TorchScriptRoundTripInCpp) {
  TempDir tmp;
  for (bool bias : {true, false}) {
    const Config config = small_config(Activation::softmax, bias);
    Model model(config.model, kImageShape, 3);
    export_model(*model, config, tmp / "model.pt");
    torch::jit::ExtraFilesMap extra = {{"config.json", ""}, {"classes.json", ""}, {"preprocessing.json", ""}};
    torch::jit::Module loaded = torch::jit::load((tmp / "model.pt").string(), torch::kCPU, extra);
    const torch::Tensor x = torch::rand({5, 1, 28, 28});
    const torch::Tensor expected = model->forward(x);
    const torch::Tensor got = loaded.forward({x}).toTensor();
    EXPECT_LE((got - expected).abs().max().item<float>(), 1e-6);
    EXPECT_TRUE(loaded.forward({x.squeeze(1)}).toTensor().equal(got));  // [N, 28, 28] too
    EXPECT_EQ(parse_config(nlohmann::json::parse(extra["config.json"])).name, "small");
    EXPECT_EQ(nlohmann::json::parse(extra["classes.json"]).size(), 10u);
    EXPECT_NE(extra["preprocessing.json"].find("pixel / 255"), std::string::npos);
    std::vector<std::string> names;
    for (const auto& p : loaded.named_parameters()) names.push_back(p.name);
    EXPECT_EQ(names, bias ? std::vector<std::string>({"dense.weight", "dense.bias", "dense_1.weight", "dense_1.bias"})
                          : std::vector<std::string>({"dense.weight", "dense_1.weight", "dense_1.bias"}));
    // load_model reads an export back into the same model.
    LoadedModel back = load_model((tmp / "model.pt").string());
    EXPECT_TRUE(back.model->forward(x).equal(expected));
  }
}

// A model file read back is the model that was written: a flipped bit in a weight, in an export or a
// checkpoint, fails the checksum written with it, and non-finite weights are refused outright.
TEST(Export, DamagedOrNonFiniteWeightsAreRefused) {
  TempDir tmp;
  const Config config = small_config();
  Model model(config.model, kImageShape, 0);
  {
    torch::NoGradGuard no_grad;
    model->state().back().second.fill_(1234.5f);  // dense_1.bias: a value whose bytes are easy to find
  }
  export_model(*model, config, tmp / "model.pt");
  Trainer trainer(model, config.training, torch::kCPU);
  save_checkpoint(tmp / "checkpoint.pt", *model, config, trainer);
  const std::string pattern("\x00\x50\x9a\x44", 4);  // 1234.5f, little-endian
  for (const char* name : {"model.pt", "checkpoint.pt"}) {
    ASSERT_NO_THROW(load_model((tmp / name).string())) << name;
    std::string bytes = slurp(tmp / name);
    const size_t at = bytes.find(pattern);
    ASSERT_NE(at, std::string::npos) << name;
    bytes[at + 1] ^= 0x01;  // 1234.5 -> 1234.50012: still a finite float
    write_file(tmp / (std::string("flipped-") + name), bytes);
    try {
      load_model((tmp / (std::string("flipped-") + name)).string());
      ADD_FAILURE() << name << ": a flipped weight was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("is damaged: its weights do not match the checksum"), std::string::npos) << e.what();
    }
  }
  {
    torch::NoGradGuard no_grad;
    model->state().front().second[0][0] = std::numeric_limits<float>::quiet_NaN();
  }
  export_model(*model, config, tmp / "nan.pt");
  try {
    load_model((tmp / "nan.pt").string());
    ADD_FAILURE() << "NaN weights were accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor dense.weight holds non-finite values"), std::string::npos) << e.what();
  }
}

// A layer's name reaches the generated TorchScript (`self.<name>`) and names its submodule: every
// name the config accepts must export, load and run, and the rest is refused when the config is
// read, never after training. The candidates: Python's keywords and builtins, what a TorchScript
// module already has, and the names the generated code uses.
TEST(Export, EveryLayerNameTheConfigAcceptsExports) {
  const std::vector<std::string> candidates = {
      "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
      "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
      "not", "or", "pass", "raise", "return", "try", "while", "with", "yield", "self", "forward", "training", "torch",
      "x", "ones", "Tensor", "math", "float", "int", "bool", "str", "list", "dict", "tuple", "print", "range", "len",
      "super", "object", "type", "isinstance", "annotate", "Optional", "List", "Dict", "Tuple", "Any", "Final", "eval",
      "train", "parameters", "named_parameters", "modules", "children", "buffers", "attributes", "state_dict", "to",
      "cpu", "cuda", "double", "half", "apply", "define", "save", "copy", "deepcopy", "graph", "code", "dump",
      "register_buffer", "register_parameter", "register_module", "register_attribute", "weight", "bias", "running_mean",
      "dtype", "device", "_private", "__init__", "__dict__", "_c", "dense_forward", "Training", "model", "layers"};
  TempDir tmp;
  int accepted = 0;
  for (const auto& name : candidates) {
    const std::string text = R"({"model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 4, "name": ")" + name +
                             R"("}, {"type": "Dense", "units": 10, "activation": "softmax"}]}})";
    Config config;
    try {
      config = parse_config_text(text, "t");
    } catch (const ConfigError& e) {
      continue;  // refused up front: fine
    } catch (const UsageError& e) {
      continue;
    }
    ++accepted;
    Model model(config.model, kImageShape, 0);
    try {
      export_model(*model, config, tmp / "m.pt");
      torch::jit::Module loaded = torch::jit::load((tmp / "m.pt").string());
      const torch::Tensor x = torch::rand({2, 1, 28, 28});
      EXPECT_LE((loaded.forward({x}).toTensor() - model->forward(x)).abs().max().item<float>(), 1e-6) << name;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "layer name \"" << name << "\" passes the config but does not export: " << std::string(e.what()).substr(0, 200);
    }
  }
  EXPECT_GE(accepted, 4);  // dense_forward, Training, model, layers at least
}

// Our model.pt and model_weights.pt, loaded by Python's torch.jit.load and torch.load (without our
// code), give the C++ model's outputs: in every Python torch of kPythons that is installed.
TEST(Export, PythonTorchLoadsOurExportsAndGivesTheSameOutputs) {
  // Two models (one with convolutions and BatchNormalization), each exported with an io.pt of
  // inputs and the C++ model's outputs; every Python checks both in one process.
  TempDir tmp;
  std::string dirs;
  for (const std::string file : {"", "configs/cnn.json"}) {
    const Config config = file.empty() ? small_config() : load_config_file(file);
    const std::filesystem::path dir = tmp / config.name;
    std::filesystem::create_directories(dir);
    Model model(config.model, kImageShape, 4);
    model->eval();
    export_model(*model, config, dir / "model.pt");
    const torch::Tensor x = torch::rand({7, 1, 28, 28});
    c10::Dict<std::string, torch::Tensor> io;
    io.insert("input", x);
    io.insert("output", model->forward(x).detach());
    const auto bytes = save_tensor_dict(io);
    write_file(dir / "io.pt", std::string(bytes.begin(), bytes.end()));
    dirs += " '" + dir.string() + "'";
  }
  int checked = 0;
  for (const std::string& python : kPythons) {
    if (!imports_torch(python)) {
      std::cout << "not checked: " << python << " (absent, or no torch there)\n";
      continue;
    }
    ++checked;
    SCOPED_TRACE(python);
    FILE* pipe = popen((python + " tests/python/check_export.py" + dirs + " 2>&1").c_str(), "r");
    std::string output;
    char buf[512];
    while (fgets(buf, sizeof buf, pipe)) output += buf;
    EXPECT_EQ(pclose(pipe), 0) << output;
    EXPECT_NE(output.find("config small"), std::string::npos) << output;
    EXPECT_NE(output.find("config cnn"), std::string::npos) << output;
    std::cout << python << ": " << output;  // the Python side's own report, for the log
  }
  if (checked == 0) GTEST_SKIP() << "SKIPPED: no Python with torch among .venv/torch, .venv/torch-cuda, /usr/bin/python3 (scripts/setup.sh)";
}

TEST(KerasImport, ReproducesAnIndependentForwardPass) {
  // Random Keras-layout weights, written as JSON the way json.dump([w.tolist() for w in get_weights()]) does.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-0.3, 0.3);
  auto matrix = [&](int rows, int cols) {
    std::vector<std::vector<double>> m(static_cast<size_t>(rows), std::vector<double>(static_cast<size_t>(cols)));
    for (auto& r : m)
      for (auto& v : r) v = static_cast<float>(u(rng));  // float32-representable, as Keras stores them
    return m;
  };
  const auto k1 = matrix(784, 8), b1 = matrix(1, 8), k2 = matrix(8, 10), b2 = matrix(1, 10);
  nlohmann::json weights = {k1, b1[0], k2, b2[0]};
  TempDir tmp;
  write_file(tmp / "w.json", weights.dump());

  const Config config = small_config(Activation::softmax);
  Model model = model_with_params(config, read_keras_weights(tmp / "w.json", config), "test");
  const torch::Tensor x = torch::rand({3, 1, 28, 28}, torch::kFloat32);
  const torch::Tensor got = model->forward(x);
  for (int64_t n = 0; n < 3; ++n) {  // Keras: softmax(relu(x @ k1 + b1) @ k2 + b2), in double
    const auto xin = x[n].flatten();
    std::vector<double> h(8), z(10);
    for (size_t j = 0; j < 8; ++j) {
      double s = b1[0][j];
      for (size_t i = 0; i < 784; ++i) s += static_cast<double>(xin[static_cast<int64_t>(i)].item<float>()) * k1[i][j];
      h[j] = std::max(0.0, s);
    }
    double total = 0;
    for (size_t j = 0; j < 10; ++j) {
      z[j] = b2[0][j];
      for (size_t i = 0; i < 8; ++i) z[j] += h[i] * k2[i][j];
      total += std::exp(z[j]);
    }
    for (size_t j = 0; j < 10; ++j)
      EXPECT_NEAR(got[n][static_cast<int64_t>(j)].item<float>(), std::exp(z[j]) / total, 1e-6) << n << "," << j;
  }
}

TEST(KerasImport, ShapeErrorsNameTheLayerAndDimension) {
  TempDir tmp;
  const Config config = small_config();
  auto error_for = [&](const nlohmann::json& j) -> std::string {
    write_file(tmp / "w.json", j.dump());
    try {
      read_keras_weights(tmp / "w.json", config);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  const nlohmann::json k1 = std::vector<std::vector<double>>(784, std::vector<double>(8, 0.0));
  const nlohmann::json b1 = std::vector<double>(8, 0.0), b2 = std::vector<double>(10, 0.0);
  const nlohmann::json k2 = std::vector<std::vector<double>>(8, std::vector<double>(10, 0.0));
  const nlohmann::json k2_wide = std::vector<std::vector<double>>(8, std::vector<double>(12, 0.0));
  EXPECT_EQ(error_for({k1, b1, k2, b2}), "");
  EXPECT_NE(error_for({k1, b1, k2}).find("holds 3 arrays; the config needs 4 in this order: dense kernel [784, 8]"), std::string::npos);
  EXPECT_NE(error_for({k1, b1, k2_wide, b2}).find("weights[2] (dense_1 kernel) has shape [8, 12]; the config's dense_1 needs [8, 10] (dimension 1: 12 vs 10)"),
            std::string::npos)
      << error_for({k1, b1, k2_wide, b2});
  EXPECT_NE(error_for({k1, k1, k2, b2}).find("weights[1] (dense bias) has shape [784, 8]"), std::string::npos);
  EXPECT_NE(error_for({k1, b1, {{1, 2}, {3}}, b2}).find("ragged"), std::string::npos);
  write_file(tmp / "w.json", "{oops");
  EXPECT_THROW(read_keras_weights(tmp / "w.json", config), std::runtime_error);
}

#ifdef MNIST_WITH_OPENCV
namespace {
// A digit drawn with cv::putText on a canvas: `invert` gives dark ink on a light background.
cv::Mat drawn_digit(const std::string& digit, int size, cv::Point at, double scale, bool invert) {
  cv::Mat img(size, size, CV_8UC1, cv::Scalar(0));
  cv::putText(img, digit, at, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(255), std::max(1, static_cast<int>(scale * 2)), cv::LINE_AA);
  if (invert) cv::bitwise_not(img, img);
  return img;
}
}  // namespace

TEST(Predict, DrawnDigitsComeOutCentredIn28x28) {
  struct Case {
    int size, x, y;
    double scale;
    bool invert;
  } cases[] = {{200, 20, 120, 3.0, false}, {200, 90, 190, 3.0, true}, {600, 400, 200, 6.0, true}, {64, 10, 40, 1.0, false}, {300, 5, 295, 4.0, true}};
  cv::Mat reference;
  for (const auto& c : cases) {
    const cv::Mat out = prepare_digit(drawn_digit("7", c.size, {c.x, c.y}, c.scale, c.invert), "drawn");
    ASSERT_EQ(out.rows, 28);
    ASSERT_EQ(out.cols, 28);
    const cv::Rect box = cv::boundingRect(out > 0);
    EXPECT_LE(std::max(box.width, box.height), 20);
    EXPECT_GE(std::max(box.width, box.height), 19);  // scaled to fill 20x20
    const cv::Moments m = cv::moments(out, false);
    EXPECT_NEAR(m.m10 / m.m00, 14.0, 1.0) << c.size << " " << c.x;
    EXPECT_NEAR(m.m01 / m.m00, 14.0, 1.0) << c.size << " " << c.y;
    EXPECT_EQ(out.at<uchar>(0, 0), 0);  // ink is bright on a dark background, whatever came in
    EXPECT_GT(cv::sum(out)[0], 255.0 * 30);
  }
}

TEST(Predict, BadImagesAreNamed) {
  TempDir tmp;
  auto error_for = [&](const fs::path& p) -> std::string {
    try {
      load_digit(p);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  write_file(tmp / "text.png", "not an image");
  EXPECT_NE(error_for(tmp / "text.png").find("text.png cannot be decoded"), std::string::npos);
  cv::imwrite((tmp / "blank.png").string(), cv::Mat(50, 50, CV_8UC1, cv::Scalar(255)));
  EXPECT_NE(error_for(tmp / "blank.png").find("blank.png has no visible ink"), std::string::npos);
  EXPECT_NE(error_for(tmp / "absent.png").find("does not exist"), std::string::npos);
  EXPECT_THROW(prepare_digit(cv::Mat(), "empty"), std::runtime_error);
  fs::create_directory(tmp / "empty_dir");
  EXPECT_THROW(collect_images({(tmp / "empty_dir").string()}), std::runtime_error);
  fs::create_directory(tmp / "digits");
  cv::imwrite((tmp / "digits" / "b.png").string(), drawn_digit("3", 100, {20, 80}, 2.0, false));
  cv::imwrite((tmp / "digits" / "a.bmp").string(), drawn_digit("1", 100, {20, 80}, 2.0, true));
  write_file(tmp / "digits" / "notes.txt", "not an image");
  const auto files = collect_images({(tmp / "digits").string()});
  ASSERT_EQ(files.size(), 2u);  // images only, sorted
  EXPECT_EQ(files[0].filename(), "a.bmp");
}
#endif  // MNIST_WITH_OPENCV
