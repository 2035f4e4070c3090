// Every bad input a user can hand the program, as one table: the binary must exit with the right
// code and one line naming the thing at fault, never a trace, and leave no half-written file.
#include <gtest/gtest.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/sysmacros.h>

#include "config/config.h"
#include "data/data.h"
#include "helpers.h"
#include "interop/export.h"
#include "interop/keras_config.h"
#include "interop/keras_files.h"
#include "interop/keras_import.h"
#include "interop/checkpoint.h"
#include "interop/rundir.h"
#include "train/train.h"

using namespace testing_helpers;

namespace {

struct BadInput {
  std::string what, args;  // args may use {tmp} and {data}
  int code;
  std::string message;
};

std::string expand(std::string s, const std::string& tmp, const std::string& data) {
  for (auto [key, value] : {std::pair<std::string, std::string>{"{tmp}", tmp}, {"{data}", data}})
    for (size_t pos; (pos = s.find(key)) != std::string::npos;) s.replace(pos, key.size(), value);
  return s;
}

// Files left under a temporary name anywhere below `dir`.
std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos) found.push_back(e.path().string());
  return found;
}

}  // namespace

TEST(BadInput, EveryCaseGivesOneLineAndTheRightExitCode) {
  TempDir tmp;
  const fs::path d = tmp.path;
  // Synthetic data directories, each broken in one way.
  auto data_dir = [&](const std::string& name, const std::string& train_images, const std::string& train_labels) {
    fs::create_directories(d / name);
    write_file(d / name / "train-images-idx3-ubyte", train_images);
    write_file(d / name / "train-labels-idx1-ubyte", train_labels);
    write_file(d / name / "t10k-images-idx3-ubyte", idx_images(10000));
    write_file(d / name / "t10k-labels-idx1-ubyte", idx_labels(10000));
  };
  const std::string images = idx_images(60000), labels = idx_labels(60000);
  data_dir("good", images, labels);
  data_dir("truncated", images.substr(0, 1000000), labels);
  data_dir("magic", idx_images(60000, 28, 28, 2049), labels);
  data_dir("counts", images, idx_labels(59999));
  fs::create_directories(d / "missing_file");
  write_file(d / "missing_file" / "train-labels-idx1-ubyte", labels);
  // Configs.
  write_file(d / "not_json.json", "{\"model\": ");
  write_file(d / "unknown_key.json", R"({"model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}, "trainig": {}})");
  write_file(d / "deep.json", std::string(100000, '[') + std::string(100000, ']'));
  write_file(d / "deep_under_key.json", "{\"model\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  write_file(d / "shapes.json", R"({"model": {"layers": [{"type": "Dense", "units": 10, "activation": "softmax"}]}})");
  // Models.
  write_file(d / "not_a_model.pt", "hello");
  const std::string layers = R"({"name": "small", "model": {"layers": [{"type": "Flatten"},
      {"type": "Dense", "units": UNITS, "activation": "relu"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}})";
  auto with_units = [&](const char* units) { return std::string(layers).replace(layers.find("UNITS"), 5, units); };
  const mnist::Config small = mnist::parse_config_text(with_units("16"), "t"), other = mnist::parse_config_text(with_units("32"), "t");
  mnist::Model model(small.model, mnist::kImageShape, 0);
  mnist::export_model(*model, small, d / "good.pt");
  const std::string good = slurp(d / "good.pt");
  write_file(d / "truncated.pt", good.substr(0, good.size() / 2));
  mnist::export_model(*model, other, d / "other_config.pt");  // weights of 16 units, a config that says 32
  // Images.
  write_file(d / "garbage.png", "\x89PNG but not really");
  write_file(d / "empty.png", "");
  write_file(d / "file_not_dir", "x");
  // FIFOs where files are expected (reading one would block), and images whose headers claim too much.
  ASSERT_EQ(::mkfifo((d / "fifo.png").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo((d / "fifo.json").c_str(), 0600), 0);
  {
    std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
    for (uint32_t v : {60000u, 60000u}) put_u32(png, v);
    write_file(d / "huge.png", png + std::string("\x08\0\0\0\0\0\0\0\0", 9));
    std::string truncated("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
    for (uint32_t v : {28u, 28u}) put_u32(truncated, v);
    write_file(d / "truncated.png", truncated + std::string("\x08\0\0\0\0\0\0\0\0\0\0\0\x40IDAT", 16));
  }
  // Another synthetic data set (one pixel differs), and a run trained on {tmp}/good to resume on it.
  std::string other_images = images;
  other_images[1000] ^= 1;
  data_dir("other", other_images, labels);
  {
    mnist::Config c = small;
    c.training.epochs = 2;
    mnist::Model m(c.model, mnist::kImageShape, 0);
    mnist::Trainer trainer(m, c.training, torch::kCPU);
    fs::create_directories(d / "good_run");
    mnist::save_checkpoint(d / "good_run" / "checkpoint.pt", *m, c, trainer, mnist::load_split((d / "good").string(), true).checksum);
  }
  // Data orders (the training split of {tmp}/good has 60000 samples) and initial weights.
  write_file(d / "order_not_json.json", "[[0, 1");
  write_file(d / "order_deep.json", std::string(100000, '[') + std::string(100000, ']'));
  write_file(d / "order_short.json", "[[0, 1], [2, 3]]");
  write_file(d / "order_twice.json", "[[0, 1, 1]]");
  write_file(d / "order_range.json", "[[0, 60000]]");
  write_file(d / "order_ragged.json", "[[0, 1], [2]]");
  write_file(d / "order_string.json", "[[0, \"1\"]]");
  write_file(d / "weights_wrong.json", "[[1.0]]");
  {  // More entries than the run or the config can use: refused as they are read, before a tree of them is built.
    std::string many = "[[0";
    for (int i = 0; i < 1300000; ++i) many += ",0";  // the paper's 79,510 weights twice, and a million more
    write_file(d / "order_long.json", many + "]]");
    write_file(d / "weights_long.json", many + "]]");
  }
  // Keras's files: a truncated .weights.h5 and a .keras whose model has a layer we do not have.
  const std::string keras_h5 = slurp("tests/data/keras/tiny-cnn.weights.h5");
  write_file(d / "truncated.weights.h5", keras_h5.substr(0, keras_h5.size() / 2));
#ifdef MNIST_WITH_KERAS_FILES
  {
    nlohmann::json lstm = mnist::keras_config_json(small);
    lstm["config"]["layers"][2] = {{"class_name", "LSTM"}, {"config", {{"name", "lstm"}, {"units", 4}}}};
    write_file(d / "lstm.keras", mnist::write_zip({{"config.json", lstm.dump()}, {"model.weights.h5", keras_h5}}));
  }
#endif
  {  // A checkpoint whose data order points outside the training split (a damaged or foreign file).
    mnist::Config c = small;
    c.training.epochs = 2;
    mnist::Model m(c.model, mnist::kImageShape, 0);
    mnist::Trainer trainer(m, c.training, torch::kCPU);
    trainer.set_data_order(torch::full({2, 4}, 70000, torch::kLong));
    fs::create_directories(d / "bad_order_run");
    mnist::save_checkpoint(d / "bad_order_run" / "checkpoint.pt", *m, c, trainer);
  }

  const BadInput cases[] = {
      {"data directory missing", "train --epochs 1 --data {tmp}/nope", 1, "data directory {tmp}/nope does not exist"},
      {"IDX file missing", "train --epochs 1 --data {tmp}/missing_file", 1, "train-images-idx3-ubyte is missing"},
      {"IDX file truncated", "train --epochs 1 --data {tmp}/truncated", 1, "train-images-idx3-ubyte is truncated: 1000000 bytes, expected 47040016"},
      {"IDX wrong magic", "train --epochs 1 --data {tmp}/magic", 1, "is not an IDX image file (magic number 0x00000801"},
      {"IDX counts disagree", "train --epochs 1 --data {tmp}/counts", 1, "train-labels-idx1-ubyte holds 59999 items"},
      {"config not JSON", "train --config {tmp}/not_json.json", 2, "not valid JSON"},
      {"config unknown key", "train --config {tmp}/unknown_key.json", 2, "config error at trainig: unknown key"},
      {"config missing", "train --config {tmp}/missing.json", 2, "{tmp}/missing.json does not exist"},
      {"config shapes", "train --config {tmp}/shapes.json", 2, "config error at model.layers[0]: Dense needs a flat input"},
      {"config nested 100000 deep", "summary --config {tmp}/deep.json", 2, "config error in {tmp}/deep.json: nested deeper than 32 levels"},
      {"config nested deep under a key", "summary --config {tmp}/deep_under_key.json", 2, "deep_under_key.json: nested deeper than 32 levels"},
      {"config is a FIFO", "train --config {tmp}/fifo.json", 2, "config file {tmp}/fifo.json is not a regular file"},
      {"--threads beyond the machine", "train --threads 100000", 2, "--threads: must be a whole number from 0 to"},
      {"--epochs 0", "train --epochs 0", 2, "--epochs: must be a whole number from 1 to 1000000 (got 0)"},
      {"unknown flag", "train --frobnicate", 2, "--frobnicate"},
      {"evaluate without a model", "evaluate", 2, "--model is required"},
      {"unknown device", "train --device tpu", 2, "--device"},
      {"bench --batch-size 0", "bench --batch-size 0", 2, "--batch-size: must be a whole number from 1 to 60000 (got 0)"},
      {"validation_split leaving nothing", "train --epochs 1 --data {tmp}/good --set training.validation_split=0.99999", 2,
       "config error at training.validation_split"},
      {"--set missing path", "train --set training.optimizer.beta=0.5", 2, "no key \"beta\" under training.optimizer"},
      {"name too long for a run directory", "summary --set name=" + std::string(201, 'n'), 2, "config error at name: must be a non-empty name"},
      {"--set wrong type", "train --set training.shuffle=maybe", 2, "training.shuffle holds boolean"},
      {"model not a model", "evaluate --model {tmp}/not_a_model.pt", 1, "not_a_model.pt is not a model written by"},
      {"model truncated", "evaluate --model {tmp}/truncated.pt", 1, "truncated.pt is not a model written by"},
      {"model missing", "evaluate --model {tmp}/absent.pt", 1, "absent.pt does not exist"},
      {"model from another config", "evaluate --model {tmp}/other_config.pt --data {tmp}/good", 1,
       "other_config.pt: tensor dense.weight has shape [16, 784] but its config needs [32, 784]"},
#ifdef MNIST_WITH_OPENCV
      {"image undecodable", "predict --model {tmp}/good.pt {tmp}/garbage.png", 1, "garbage.png cannot be decoded"},
      {"predict with a damaged model", "predict --model {tmp}/not_a_model.pt {tmp}/garbage.png", 1, "not_a_model.pt is not a model"},
      {"image empty", "predict --model {tmp}/good.pt {tmp}/empty.png", 1, "empty.png cannot be decoded"},
      {"image is a FIFO", "predict --model {tmp}/good.pt {tmp}/fifo.png", 1, "image {tmp}/fifo.png is not a regular file"},
      {"image header 60000x60000", "predict --model {tmp}/good.pt {tmp}/huge.png", 1,
       "image {tmp}/huge.png is 60000x60000 pixels; images here are at most 50 megapixels"},
      {"image truncated after its header", "predict --model {tmp}/good.pt {tmp}/truncated.png", 1,
       "truncated.png is truncated: its PNG IEND chunk is missing"},
#else
      {"predict in a build without OpenCV", "predict --model {tmp}/good.pt {tmp}/garbage.png", 2, "predict needs OpenCV"},
      {"plot in a build without OpenCV", "plot {tmp}/good_run", 2, "needs OpenCV"},
#endif
      {"data order not JSON", "train --epochs 1 --data {tmp}/good --data-order {tmp}/order_not_json.json", 1, "order_not_json.json is not valid JSON"},
      {"data order nested deep", "train --epochs 1 --data {tmp}/good --data-order {tmp}/order_deep.json", 1,
       "order_deep.json is nested deeper than a list of lists"},
      {"data order too few epochs", "train --epochs 3 --data {tmp}/good --data-order {tmp}/order_short.json", 1,
       "order_short.json orders 2 epochs; the run trains 3"},
      {"data order repeats", "train --epochs 1 --data {tmp}/good --data-order {tmp}/order_twice.json", 1,
       "epoch 1's list has index 1 twice"},
      {"data order out of range", "train --epochs 1 --data {tmp}/good --data-order {tmp}/order_range.json", 1,
       "epoch 1's list has 60000 at position 1; expected a JSON list with one list per epoch"},
      {"data order ragged", "train --epochs 2 --data {tmp}/good --data-order {tmp}/order_ragged.json", 1,
       "epoch 2's list has 1 indices where epoch 1's has 2"},
      {"data order not a number", "train --epochs 1 --data {tmp}/good --data-order {tmp}/order_string.json", 1,
       "epoch 1's list has a string at position 1"},
      {"data order list longer than the split", "train --epochs 1 --data {tmp}/good --data-order {tmp}/order_long.json", 1,
       "order_long.json: epoch 1's list has more than 60000 indices"},
      {"data order missing", "train --epochs 1 --data {tmp}/good --data-order {tmp}/nope.json", 1, "--data-order {tmp}/nope.json does not exist"},
      {"initial weights mismatch", "train --epochs 1 --data {tmp}/good --initial-weights {tmp}/weights_wrong.json", 1,
       "weights_wrong.json holds 1 arrays; the config needs 4"},
      {"Keras weights JSON of another model", "import-keras {tmp}/weights_wrong.json --out {tmp}/k.pt", 1,
       "weights_wrong.json holds 1 arrays; the config needs 4 in this order"},
      {"Keras weights JSON with more numbers than the model", "import-keras {tmp}/weights_long.json --out {tmp}/k.pt", 1,
       "weights_long.json holds far more numbers than the config's 79510 weights"},
#ifdef MNIST_WITH_KERAS_FILES
      {"Keras weights file truncated", "import-keras {tmp}/truncated.weights.h5 --out {tmp}/k.pt", 1,
       "truncated.weights.h5 is not an HDF5 file, or is truncated"},
      {"Keras weights of another model", "import-keras tests/data/keras/tiny-cnn.weights.h5 --out {tmp}/k.pt", 1,
       "tiny-cnn.weights.h5: layers/dense/vars holds 1 arrays where the config's dense (Dense) needs 2"},
      {"Keras model with an unsupported layer", "import-keras {tmp}/lstm.keras --out {tmp}/k.pt", 1,
       "lstm.keras: config.json: layers[2] (LSTM 'lstm') is not a layer type this program has"},
      {"Keras model and --config", "import-keras tests/data/keras/tiny-cnn.keras --config configs/paper.json --out {tmp}/k.pt", 2,
       "--config does not apply to tests/data/keras/tiny-cnn.keras"},
#else
      {"Keras files in a build without HDF5", "import-keras {tmp}/truncated.weights.h5 --out {tmp}/k.pt", 1,
       "this build has no HDF5/libzip"},
#endif
      {"checkpoint's data order out of range", "train --resume {tmp}/bad_order_run --data {tmp}/good", 1,
       "bad_order_run/checkpoint.pt holds a data order that does not index this training split of 60000 samples"},
      {"resume on other data", "train --resume {tmp}/good_run --data {tmp}/other", 2,
       "{tmp}/good_run was trained on other data (training files' checksum"},
      {"resume with a data order", "train --resume {tmp}/nope --data-order {tmp}/order_short.json", 2, "drop --config, --set"},
      {"output dir not empty", "train --epochs 1 --data {tmp}/good --out {tmp}/good", 2, "already exists and is not an empty directory"},
      {"output dir not writable", "train --epochs 1 --data {tmp}/good --out {tmp}/file_not_dir/run", 1, "cannot create run directory"},
  };
  for (const auto& c : cases) {
    const CommandResult r = run_mnist(expand(c.args, d.string(), ""));
    const std::string message = expand(c.message, d.string(), "");
    EXPECT_EQ(r.exit_code, c.code) << c.what << ": " << r.err;
    EXPECT_EQ(r.err.rfind("mnist: ", 0), 0u) << c.what << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << c.what << ": expected \"" << message << "\" in " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.what << ": " << r.err;
  }
  EXPECT_EQ(leftovers(d), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(d / "k.pt"));  // no failed import-keras wrote its output
}

TEST(BadInput, OutputsReplaceOnlyRegularFilesAndNeverTheirInputs) {
  TempDir tmp;
  const fs::path d = tmp.path;
  const mnist::Config small = mnist::parse_config_text(R"({"name": "small", "model": {"layers": [{"type": "Flatten"},
      {"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}})", "t");
  write_file(d / "small.json", mnist::to_json(small).dump());
  mnist::Model model(small.model, mnist::kImageShape, 0);
  mnist::export_model(*model, small, d / "good.pt");
  write_file(d / "w.json", mnist::keras_weights_json(*model).dump());
  {
    mnist::Trainer trainer(model, small.training, torch::kCPU);
    fs::create_directories(d / "run");
    mnist::save_checkpoint(d / "run" / "checkpoint.pt", *model, small, trainer);
    write_file(d / "run" / "metrics.json", "{\"seconds\": 1}");
  }
  ASSERT_EQ(::mkfifo((d / "fifo.pt").c_str(), 0600), 0);
  write_file(d / "target.txt", "keep");
  fs::create_symlink(d / "target.txt", d / "link.json");
  write_file(d / "m_weights.pt", "someone else's");
  const bool device = ::mknod((d / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0;  // as root only

  const BadInput cases[] = {
      {"onto a FIFO", "export --run {tmp}/good.pt --out {tmp}/fifo.pt", 2, "--out {tmp}/fifo.pt: it is a FIFO"},
      {"onto a symbolic link", "export --run {tmp}/good.pt --out {tmp}/link.json", 2, "--out {tmp}/link.json: it is a symbolic link"},
      {"--config-out onto a link", "import-keras {tmp}/w.json --config {tmp}/small.json --out {tmp}/k.pt --config-out {tmp}/link.json", 2,
       "--config-out {tmp}/link.json: it is a symbolic link"},
      {"onto a folder", "export --run {tmp}/good.pt --out {tmp}/run.json", 2, ""},
      {"onto its own input", "import-keras {tmp}/w.json --config {tmp}/small.json --out {tmp}/w.json", 2,
       "--out {tmp}/w.json: that is this command's input {tmp}/w.json"},
      {"onto its own config", "import-keras {tmp}/w.json --config {tmp}/small.json --out {tmp}/k.pt --config-out {tmp}/small.json", 2,
       "--config-out {tmp}/small.json: that is this command's input"},
      {"two outputs on one path", "import-keras {tmp}/w.json --config {tmp}/small.json --out {tmp}/k.pt --config-out {tmp}/k.pt", 2,
       "--config-out {tmp}/k.pt: that is this command's input"},
      {"export onto the model it reads", "export --run {tmp}/good.pt --out {tmp}/good.pt", 2, "that is this command's input {tmp}/good.pt"},
      {"export onto the checkpoint", "export --run {tmp}/run --out {tmp}/run/checkpoint.pt", 2, "that is this command's input"},
      {"a stranger's file where the state_dict goes", "import-keras {tmp}/w.json --config {tmp}/small.json --out {tmp}/m.pt", 2,
       "its state_dict goes to {tmp}/m_weights.pt, which exists without m.pt beside it"},
      {"evaluate into a run", "evaluate --model {tmp}/run --out {tmp}/run", 2, "--out {tmp}/run: that is a training run's directory"},
      {"compare onto a history it reads", "compare {tmp}/run --out {tmp}/run/metrics.json", 2, "that is this command's input"},
  };
  fs::create_directories(d / "run.json");
  for (const auto& c : cases) {
    const CommandResult r = run_mnist(expand(c.args, d.string(), ""));
    const std::string message = expand(c.message, d.string(), "");
    EXPECT_EQ(r.exit_code, c.code) << c.what << ": " << r.err;
    EXPECT_NE(r.err.find(message.empty() ? "it is a folder" : message), std::string::npos) << c.what << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.what << ": " << r.err;
  }
  if (device) {
    const CommandResult r = run_mnist("export --run " + (d / "good.pt").string() + " --out " + (d / "null").string());
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("it is a device"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::is_character_file(d / "null"));
  }
  // Every one of them left alone.
  EXPECT_TRUE(fs::is_fifo(d / "fifo.pt"));
  EXPECT_TRUE(fs::is_symlink(d / "link.json"));
  EXPECT_EQ(slurp(d / "target.txt"), "keep");
  EXPECT_EQ(slurp(d / "m_weights.pt"), "someone else's");
  EXPECT_EQ(slurp(d / "run" / "metrics.json"), "{\"seconds\": 1}");
  EXPECT_FALSE(fs::exists(d / "k.pt"));
  EXPECT_EQ(leftovers(d), std::vector<std::string>{});
  // Past a file-size limit (ulimit -f, 10 KiB) a write fails with the message of a full disk, never SIGXFSZ's silent end.
  const std::string limited = "ulimit -f 10; '" + std::string(MNIST_BINARY) + "' export --run '" + (d / "good.pt").string() + "' --out '" +
                              (d / "big.keras").string() + "' 2>'" + (d / "err").string() + "'";
  const int status = std::system(("bash -c \"" + limited + "\"").c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  EXPECT_NE(slurp(d / "err").find("big.keras: disk full or not writable"), std::string::npos) << slurp(d / "err");
  EXPECT_FALSE(fs::exists(d / "big.keras"));
  EXPECT_EQ(leftovers(d), std::vector<std::string>{});
  // A re-export replaces the pair it wrote before.
  EXPECT_EQ(run_mnist("export --run " + (d / "good.pt").string() + " --out " + (d / "again.pt").string()).exit_code, 0);
  EXPECT_EQ(run_mnist("export --run " + (d / "good.pt").string() + " --out " + (d / "again.pt").string()).exit_code, 0);
}

TEST(BadInput, DiskFullWhileWritingLeavesNoHalfWrittenFile) {
  // A 200 KiB file-size limit (SIGXFSZ ignored, so writes fail with EFBIG like on a full disk):
  // the config and history fit, the 320 KiB checkpoint does not. The run, under runs/, never
  // becomes runs/latest, which still links to the run before it.
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  fs::create_directories(tmp / "runs" / "older");
  fs::create_directory_symlink("older", tmp / "runs" / "latest");
  const std::string cmd = "cd '" + tmp.path.string() + "' && bash -c 'ulimit -f 200; trap \"\" XFSZ; exec \"" + std::string(MNIST_BINARY) +
                          "\" train --config " + fs::absolute("configs/quick.json").string() + " --epochs 1 --data " + tmp.path.string() + "' >/dev/null 2>'" + (tmp / "err").string() + "'";
  const int status = std::system(cmd.c_str());
  const std::string err = slurp(tmp / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_EQ(err.rfind("mnist: ", 0), 0u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(fs::read_symlink(tmp / "runs" / "latest"), "older");
  for (const auto& run : fs::directory_iterator(tmp / "runs")) {
    EXPECT_FALSE(fs::exists(run.path() / "checkpoint.pt")) << run.path();  // never a partial checkpoint under the real name
    EXPECT_EQ(leftovers(run.path()), std::vector<std::string>{}) << run.path();
  }
  EXPECT_EQ(leftovers(tmp.path), std::vector<std::string>{});
}

// Under an address-space limit (`ulimit -v`) every command ends in one of three ways, never a hang
// or an abort: it works, it says it is out of memory in one line (exit 1), or, far below what its
// libraries take, the system's loader refuses it (exit 127, before any code of the program runs).
TEST(BadInput, AMemoryLimitNeverHangsOrAborts) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "SKIPPED under AddressSanitizer: its shadow memory needs far more address space than any limit here";
#endif
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  int worked = 0;
  for (int mb = 500; mb <= 1400; mb += 100) {
    for (const std::string& command : {"summary --config " + fs::absolute("configs/quick.json").string(),
                                       "train --config " + fs::absolute("configs/quick.json").string() + " --epochs 1 --data " +
                                           tmp.path.string() + " --out " + (tmp / ("run" + std::to_string(mb))).string()}) {
      const std::string cmd = "ulimit -v " + std::to_string(mb * 1000) + "; timeout 60 '" + MNIST_BINARY + "' " + command +
                              " >/dev/null 2>'" + (tmp / "err").string() + "'";
      const int status = std::system(("bash -c \"" + cmd + "\"").c_str());
      const std::string err = slurp(tmp / "err");
      ASSERT_TRUE(WIFEXITED(status)) << mb << " MB: " << command;
      const int code = WEXITSTATUS(status);
      worked += code == 0;
      if (code == 127) continue;  // the loader's own message
      EXPECT_TRUE(code == 0 || code == 1) << mb << " MB, exit " << code << ": " << command << "\n" << err;
      if (code == 1) {
        EXPECT_EQ(err.rfind("mnist: out of memory", 0), 0u) << mb << " MB: " << err;
        EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << mb << " MB: " << err;
      }
    }
  }
  EXPECT_GE(worked, 2) << "no command worked even under the largest limit";
}

// SIGTERM while an output is being written takes its temporary with it: inotify reports the
// temporary's creation and the signal follows at once, while the 70 MB Keras weights list is still
// being written.
TEST(BadInput, SigtermWhileAnOutputIsWrittenLeavesNoTemporary) {
  TempDir tmp;
  const mnist::Config config = mnist::apply_overrides(mnist::load_config_file("configs/quick.json"), {"model.layers[1].units=8192"});
  mnist::Model model(config.model, mnist::kImageShape, 0);
  mnist::export_model(*model, config, tmp / "big.pt");
  const fs::path out_dir = tmp / "out";
  fs::create_directory(out_dir);
  const int watch = ::inotify_init1(IN_CLOEXEC);
  ASSERT_GE(watch, 0);
  ASSERT_GE(::inotify_add_watch(watch, out_dir.c_str(), IN_CREATE), 0);
  const std::string run = (tmp / "big.pt").string(), out = (out_dir / "m.json").string();
  const pid_t child = ::fork();
  if (child == 0) {
    ::execl(MNIST_BINARY, MNIST_BINARY, "export", "--run", run.c_str(), "--out", out.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  pollfd ready{watch, POLLIN, 0};
  ASSERT_EQ(::poll(&ready, 1, /*timeout_ms=*/120000), 1) << "export never created its temporary";
  alignas(inotify_event) char event[sizeof(inotify_event) + NAME_MAX + 1];
  ASSERT_GT(::read(watch, event, sizeof event), 0);
  ::kill(child, SIGTERM);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(watch);
  EXPECT_EQ(std::string(reinterpret_cast<inotify_event*>(event)->name).rfind(".m.json.tmp-", 0), 0u);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;  // ended as SIGTERM ends a program
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(leftovers(out_dir), std::vector<std::string>{});
}
