// Config parsing, validation errors with JSON paths, and --set overrides.
#include <gtest/gtest.h>

#include "config/config.h"
#include "config/errors.h"

using namespace mnist;

namespace {

const char* kPaper = R"({"name": "paper", "dataset": "mnist",
  "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 100, "activation": "relu"},
                       {"type": "Dense", "units": 10, "activation": "sigmoid"}]},
  "training": {"epochs": 100, "batch_size": 32, "shuffle": true, "validation_split": 0.0, "seed": 0,
               "optimizer": {"name": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
               "loss": {"name": "sparse_categorical_crossentropy", "semantics": "tensorflow"}}})";

// Parses `text` and returns the error message ("" when it parses).
std::string error_of(const std::string& text) {
  try {
    parse_config_text(text, "test.json");
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

std::string with(const std::string& from, const std::string& to) {
  std::string s = kPaper;
  const auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

}  // namespace

TEST(Config, PaperConfigParsesWithKerasDefaults) {
  const Config c = parse_config_text(kPaper, "test.json");
  EXPECT_EQ(c.name, "paper");
  ASSERT_EQ(c.model.layers.size(), 3u);
  EXPECT_EQ(c.model.layers[1].name, "dense");
  EXPECT_EQ(c.model.layers[2].name, "dense_1");
  const auto& out = std::get<DenseSpec>(c.model.layers[2].params);
  EXPECT_EQ(out.units, 10);
  EXPECT_EQ(out.activation, Activation::sigmoid);
  EXPECT_EQ(c.training.optimizer.name, Optimizer::adam);
  EXPECT_DOUBLE_EQ(c.training.optimizer.epsilon, 1e-7);
  EXPECT_EQ(c.training.loss.semantics, LossSemantics::tensorflow);
}

TEST(Config, RepositoryConfigsAreValid) {
  for (const char* f : {"configs/paper.json", "configs/paper-softmax.json", "configs/quick.json"})
    EXPECT_NO_THROW(load_config_file(f)) << f;
  EXPECT_EQ(load_config_file("configs/paper.json").training.epochs, 100);
}

TEST(Config, OmittedOptimizerKeysTakeThatOptimizersKerasDefaults) {
  auto c = parse_config_text(with(R"("name": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7)",
                                   R"("name": "sgd")"),
                              "t");
  EXPECT_DOUBLE_EQ(c.training.optimizer.learning_rate, 0.01);  // keras.optimizers.SGD
  c = parse_config_text(with(R"("name": "adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7)",
                              R"("name": "rmsprop")"),
                         "t");
  EXPECT_DOUBLE_EQ(c.training.optimizer.learning_rate, 0.001);
  EXPECT_DOUBLE_EQ(c.training.optimizer.rho, 0.9);
}

TEST(Config, ErrorsNameTheJsonPath) {
  struct Case {
    std::string text, expected;
  } cases[] = {
      {"{not json", "not valid JSON"},
      {with(R"("epochs": 100)", R"("epochs": 100, "epochs": 3)"), "the key \"epochs\" appears twice in one object; keep one"},
      {with(R"("epochs": 100)", R"("epochs": 100, "epochz": 1)"), "config error at training.epochz: unknown key"},
      {with(R"("learning_rate": 0.001)", R"("learning_rate": -1)"),
       "config error at training.optimizer.learning_rate: must be > 0 (got -1)"},
      {with(R"("epochs": 100)", R"("epochs": "many")"), "config error at training.epochs: must be an integer"},
      {with(R"("epochs": 100)", R"("epochs": 0)"), "config error at training.epochs: must be between 1"},
      {with(R"("validation_split": 0.0)", R"("validation_split": 1.0)"), "training.validation_split: must be in [0, 1)"},
      {with(R"("shuffle": true)", R"("shuffle": 1)"), "training.shuffle: must be true or false"},
      {with(R"({"type": "Flatten"})", R"({"type": "Conv9D"})"), "model.layers[0].type: must be one of Flatten, Reshape, Dense, Conv2D"},
      {with(R"("activation": "relu")", R"("activation": "gelu")"), "model.layers[1].activation: must be one of"},
      {with(R"("activation": "relu")", R"("activation": "relu", "name": "training")"),
       "model.layers[1].name: is reserved in the exported TorchScript"},
      {with(R"("units": 100)", R"("units": "ten")"), "model.layers[1].units: must be an integer"},
      {with(R"("units": 10,)", R"("units": 7,)"), "model.layers[2].units: the output layer needs 10 units"},
      {with(R"("semantics": "tensorflow")", R"("semantics": "jax")"), "training.loss.semantics: must be one of"},
      {with(R"("name": "adam",)", R"("name": "nadam",)"), "training.optimizer.name: must be one of adam, adamw, sgd, rmsprop"},
      {with(R"("beta_1": 0.9)", R"("beta_1": 0.9, "rho": 0.9)"), "training.optimizer.rho: unknown key"},
      {with(R"("activation": "sigmoid")", R"("activation": "linear")"), "training.loss.from_logits"},
      {with(R"("dataset": "mnist")", R"("dataset": "cifar10")"), "config error at dataset"},
      {with(R"("layers": [)", R"("layers": 3, "x": [)"), "model.layers: must be a non-empty list"},
  };
  for (const auto& c : cases) {
    const std::string err = error_of(c.text);
    EXPECT_NE(err.find(c.expected), std::string::npos) << "expected \"" << c.expected << "\" in \"" << err << "\"";
    EXPECT_EQ(err.find('\n'), std::string::npos) << "one line: " << err;
  }
}

TEST(Config, FromLogitsAcceptsALinearOutput) {
  std::string text = with(R"("activation": "sigmoid")", R"("activation": "linear")");
  text.replace(text.find(R"("semantics": "tensorflow")"), 25, R"("semantics": "tensorflow", "from_logits": true)");
  const Config c = parse_config_text(text, "t");
  EXPECT_TRUE(c.training.loss.from_logits);
  EXPECT_EQ(std::get<DenseSpec>(c.model.layers[2].params).activation, Activation::linear);
}

TEST(Config, SetOverridesOneValueAndRevalidates) {
  const Config base = parse_config_text(kPaper, "t");
  Config c = apply_overrides(base, {"training.optimizer.learning_rate=0.01", "model.layers[1].units=200",
                                    "model.layers.1.activation=tanh", "training.loss.semantics=renormalized"});
  EXPECT_DOUBLE_EQ(c.training.optimizer.learning_rate, 0.01);
  EXPECT_EQ(std::get<DenseSpec>(c.model.layers[1].params).units, 200);
  EXPECT_EQ(std::get<DenseSpec>(c.model.layers[1].params).activation, Activation::tanh);
  EXPECT_EQ(c.training.loss.semantics, LossSemantics::renormalized);
  // Switching optimizer resets to that optimizer's Keras defaults, then later --set keys apply.
  c = apply_overrides(base, {"training.optimizer.name=sgd", "training.optimizer.momentum=0.9"});
  EXPECT_EQ(c.training.optimizer.name, Optimizer::sgd);
  EXPECT_DOUBLE_EQ(c.training.optimizer.learning_rate, 0.01);
  EXPECT_DOUBLE_EQ(c.training.optimizer.momentum, 0.9);
}

// A --set applies before the file's values are checked: it can repair one (`mnist train --config
// x.json --epochs 3` on a file with epochs 0), while a file whose shape is wrong fails as before.
TEST(Config, SetRepairsAValueTheFileGotWrong) {
  const std::string zero_epochs = with(R"("epochs": 100)", R"("epochs": 0)");
  EXPECT_THROW(parse_config_text(zero_epochs, "t"), ConfigError);
  EXPECT_EQ(parse_config_text(zero_epochs, "t", {"training.epochs=3"}).training.epochs, 3);
  const std::string logits = with(R"("activation": "sigmoid")", R"("activation": "linear")");
  EXPECT_THROW(parse_config_text(logits, "t"), ConfigError);
  EXPECT_TRUE(parse_config_text(logits, "t", {"training.loss.from_logits=true"}).training.loss.from_logits);
  try {  // an unrelated --set leaves the file's error standing, and the message says where it came from
    parse_config_text(zero_epochs, "x.json", {"training.seed=1"});
    ADD_FAILURE() << "epochs 0 accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.path, "training.epochs");
    EXPECT_NE(std::string(e.what()).find("[in x.json with the --set changes]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_config_text(with(R"("epochs": 100)", R"("epochs": "many")"), "t", {"training.epochs=3"}), ConfigError);
}

TEST(Config, SetRejectsUnknownPathsWrongTypesAndBadValues) {
  const Config base = parse_config_text(kPaper, "t");
  auto message = [&](const std::string& set) -> std::string {
    try {
      apply_overrides(base, {set});
    } catch (const UsageError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message("training.optimizer.lr=0.1").find("no key \"lr\" under training.optimizer"), std::string::npos);
  EXPECT_NE(message("training.epochs=abc").find("holds number"), std::string::npos);
  EXPECT_NE(message("training.shuffle=1").find("holds boolean"), std::string::npos);
  EXPECT_NE(message("model.layers[7].units=3").find("no key \"7\""), std::string::npos);
  EXPECT_NE(message("training.epochs").find("expected KEY.PATH=VALUE"), std::string::npos);
  EXPECT_NE(message("training.epochs=-3").find("config error at training.epochs"), std::string::npos);
  EXPECT_NE(message("training=3").find("not a single value"), std::string::npos);
}

TEST(Config, ResolvedJsonRoundTrips) {
  const Config c = parse_config_text(kPaper, "t");
  const Config again = parse_config(to_json(c));
  EXPECT_EQ(to_json(again), to_json(c));
}

TEST(Config, TrainingFeaturesParseAndGuardTheTestSet) {
  auto with_training = [](const std::string& training) {
    return R"({"model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]},
               "training": )" + training + "}";
  };
  const Config c = parse_config_text(with_training(R"({"validation_split": 0.1, "optimizer": {"name": "adamw"},
      "lr_schedule": {"name": "exponential_decay", "decay_steps": 100, "decay_rate": 0.9},
      "early_stopping": {"patience": 3, "restore_best_weights": true},
      "augmentation": {"rotation_range": 10, "zoom_range": 0.1}, "loss": {"label_smoothing": 0.1}})"),
                                     "t");
  EXPECT_EQ(c.training.optimizer.weight_decay, 0.004);  // keras.optimizers.AdamW default
  EXPECT_TRUE(c.training.early_stopping.enabled);
  EXPECT_EQ(c.training.early_stopping.monitor, Monitor::val_loss);  // Keras default
  EXPECT_TRUE(c.training.augmentation.enabled());
  EXPECT_EQ(c.training.augmentation.fill_mode, FillMode::nearest);
  EXPECT_EQ(parse_config(to_json(c)).training.lr_schedule.decay_steps, 100);  // round trip

  auto error = [&](const std::string& training) {
    try {
      parse_config_text(with_training(training), "t");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // A --set inside such a section turns it on too, unless the command line says otherwise.
  const Config base = parse_config_text(with_training(R"({"validation_split": 0.1})"), "t");
  EXPECT_TRUE(apply_overrides(base, {"training.early_stopping.patience=3"}).training.early_stopping.enabled);
  EXPECT_TRUE(apply_overrides(base, {"training.reduce_lr_on_plateau.factor=0.5"}).training.reduce_lr_on_plateau.enabled);
  EXPECT_FALSE(apply_overrides(base, {"training.early_stopping.patience=3", "training.early_stopping.enabled=false"})
                   .training.early_stopping.enabled);
  EXPECT_FALSE(apply_overrides(base, {"training.epochs=3"}).training.early_stopping.enabled);
  EXPECT_NE(error(R"({"early_stopping": {"patience": 3}})")
                .find("training.early_stopping.monitor: monitors val_loss but training.validation_split is 0"),
            std::string::npos);
  EXPECT_NE(error(R"({"validation_split": 0.1, "reduce_lr_on_plateau": {}, "lr_schedule": {"name": "cosine_decay"}})")
                .find("training.reduce_lr_on_plateau: cannot be combined with training.lr_schedule cosine_decay"),
            std::string::npos);
  EXPECT_NE(error(R"({"lr_schedule": {"name": "exponential_decay", "decay_steps": 10}})").find("training.lr_schedule.decay_rate: missing"),
            std::string::npos);
  EXPECT_NE(error(R"({"augmentation": {"rotate": 10}})").find("training.augmentation.rotate: unknown key"), std::string::npos);
  EXPECT_NE(error(R"({"augmentation": {"zoom_range": 2}})").find("training.augmentation.zoom_range: must be between 0 and 0.9"),
            std::string::npos);
}

TEST(Config, FusedDefaultsOnAndIsABoolean) {
  EXPECT_TRUE(parse_config_text(kPaper, "t").training.fused);
  EXPECT_FALSE(parse_config_text(with(R"("shuffle": true)", R"("shuffle": true, "fused": false)"), "t").training.fused);
  EXPECT_NE(error_of(with(R"("shuffle": true)", R"("shuffle": true, "fused": "no")")).find("training.fused: must be true or false"),
            std::string::npos);
  const Config c = apply_overrides(parse_config_text(kPaper, "t"), {"training.fused=false"});
  EXPECT_FALSE(c.training.fused);
  EXPECT_EQ(to_json(c)["training"]["fused"], false);
}
