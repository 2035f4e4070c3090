// command_predict: `mnist predict`: the digit in each image file (or folder of them), with the
// model's highest outputs, as lines or one JSON document.
#include <iomanip>
#include <iostream>

#include "app/command.h"
#include "config/user_input.h"
#include "interop/export.h"
#ifdef MNIST_WITH_OPENCV
#include "report/predict.h"
#endif

namespace mnist {
namespace {

struct PredictFlags {
  std::string model;
  std::vector<std::string> images;
  int64_t top = 3;
  bool json = false;
};

#ifdef MNIST_WITH_OPENCV
// What a model's outputs are, said honestly: only a softmax head gives probabilities (they sum to
// 1); a sigmoid head's ten outputs each lie in [0, 1] on their own, and several can be 1.000.
std::string outputs_are(Activation head) {
  switch (head) {
    case Activation::softmax: return "softmax probabilities";
    case Activation::linear: return "logits";
    default: return to_string(head) + " outputs";
  }
}

// One entry per image: its `top` classes, highest output first.
nlohmann::json ranked_predictions(const torch::Tensor& outputs, const std::vector<fs::path>& files,
                                  const std::vector<std::string>& classes, int64_t top) {
  const int64_t k = std::min<int64_t>(top, outputs.size(1));
  const auto [scores, labels] = outputs.topk(k, 1);
  nlohmann::json predictions = nlohmann::json::array();
  for (size_t i = 0; i < files.size(); ++i) {
    nlohmann::json ranked = nlohmann::json::array();
    for (int64_t r = 0; r < k; ++r) {
      const int64_t label = labels[static_cast<int64_t>(i)][r].item<int64_t>();
      ranked.push_back({{"label", label}, {"class", classes[static_cast<size_t>(label)]},
                        {"output", scores[static_cast<int64_t>(i)][r].item<double>()}});
    }
    predictions.push_back({{"image", files[i].string()}, {"predicted", ranked[0]["label"]}, {"class", ranked[0]["class"]}, {"top", ranked}});
  }
  return predictions;
}

// Each image's digit; an image that has none (undecodable, cut short, blank) is named on stderr and
// passed over, so that one bad file in a folder does not cost the others their answers.
std::vector<fs::path> load_digits(const std::vector<fs::path>& files, std::vector<torch::Tensor>& digits) {
  std::vector<fs::path> loaded;
  for (const auto& file : files) {
    try {
      digits.push_back(load_digit(file));
      loaded.push_back(file);
    } catch (const std::runtime_error& e) {
      std::cerr << "mnist: " << printable(e.what()) << "\n";
    }
  }
  return loaded;
}

int run_predict(const PredictFlags& f) {
  LoadedModel loaded = load_model(f.model);
  std::vector<torch::Tensor> digits;
  const auto all = collect_images(f.images), files = load_digits(all, digits);
  const int code = files.size() == all.size() ? 0 : 1;
  if (files.empty()) return code;
  torch::Tensor outputs;
  {
    torch::NoGradGuard no_grad;
    loaded.model->eval();
    outputs = loaded.model->forward(torch::stack(digits));
  }
  const nlohmann::json predictions = ranked_predictions(outputs, files, class_names(loaded.config.dataset), f.top);
  const Activation head = loaded.model->output_activation();
  if (f.json) {
    std::cout << nlohmann::json{{"model", f.model}, {"output_activation", to_string(head)}, {"outputs_are", outputs_are(head)},
                                {"predictions", predictions}}.dump(2, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return code;
  }
  for (const auto& p : predictions) {
    std::cout << printable(p["image"].get<std::string>()) << ": " << p["class"].get<std::string>() << "  (" << outputs_are(head) << ": ";
    for (size_t r = 0; r < p["top"].size(); ++r)
      std::cout << (r ? ", " : "") << p["top"][r]["class"].get<std::string>() << " " << std::fixed << std::setprecision(3)
                << p["top"][r]["output"].get<double>();
    std::cout << ")\n";
  }
  return code;
}
#else
int run_predict(const PredictFlags&) { needs_opencv("predict"); }
#endif

}  // namespace

Command add_predict_command(CLI::App& app) {
  auto f = std::make_shared<PredictFlags>();
  CLI::App* cmd = app.add_subcommand("predict", "classify digit images (PNG/JPEG/BMP files or directories)");
  cmd->add_option("--model", f->model, "model.pt, checkpoint.pt or a run directory")->required();
  cmd->add_option("images", f->images, "image files and/or directories")->required()->expected(1, -1);
  cmd->add_option("--top", f->top, "how many classes to list per image")->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_flag("--json", f->json, "one JSON document");
  return {cmd, [f] { return run_predict(*f); }};
}

}  // namespace mnist
