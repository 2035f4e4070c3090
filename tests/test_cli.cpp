// The mnist binary end to end: exit codes and one-line errors for bad input, and a short real
// training run of configs/paper.json (>= 95% test accuracy) whose run directory evaluate reads.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#ifdef MNIST_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

#include <pty.h>
#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <set>

#include "data/data.h"
#include "helpers.h"
#include "interop/export.h"
#include "interop/keras_import.h"
#include "interop/checkpoint.h"
#include "interop/rundir.h"
#include "train/train.h"

using namespace testing_helpers;
using nlohmann::json;

namespace {

void expect_one_line_error(const CommandResult& r, int code, const std::string& part) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_EQ(r.err.rfind("mnist: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << "expected \"" << part << "\" in: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.find("c10::"), std::string::npos) << r.err;
}

// Two runs that trained the same: bit-identical parameters and Keras metrics per epoch.
void expect_same_training(const mnist::Checkpoint& a, const mnist::Checkpoint& b) {
  for (const auto& [name, tensor] : a.params) EXPECT_TRUE(tensor.equal(b.params.at(name))) << name;
  EXPECT_EQ(a.history.loss, b.history.loss);
  EXPECT_EQ(a.history.accuracy, b.history.accuracy);
  EXPECT_EQ(a.history.val_accuracy, b.history.val_accuracy);
}

}  // namespace

TEST(Cli, CudaRequestWithoutCudaIsAUsageError) {
  const CommandResult r = run_mnist("train --device cuda --epochs 1 --data /nonexistent");
  if (r.err.find("no CUDA device") == std::string::npos) GTEST_SKIP() << "CUDA is available here";
  expect_one_line_error(r, 2, "--device cuda");
}

TEST(Cli, TheOtherDatasetsFilesAreRefused) {
  // A model of an MNIST config scored on Fashion-MNIST's files (recognised by their checksum), and the reverse.
  TempDir tmp;
  for (const std::string dataset : {"mnist", "fashion-mnist"}) {
    const mnist::Config config = mnist::parse_config_text(
        R"({"dataset": ")" + dataset + R"(", "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}})", "t");
    mnist::Model model(config.model, mnist::kImageShape, 0);
    mnist::export_model(*model, config, tmp / (dataset + ".pt"));
    const std::string other = dataset == "mnist" ? "fashion-mnist" : "mnist";
    if (!fs::exists("data/" + other + "/t10k-images-idx3-ubyte") && !fs::exists("data/" + other + "/t10k-images-idx3-ubyte.gz")) {
      GTEST_SKIP() << "data/" << other << " is not here (scripts/fetch-data.sh all)";
    }
    expect_one_line_error(run_mnist("evaluate --model " + (tmp / (dataset + ".pt")).string() + " --data data/" + other), 2,
                          "data directory data/" + other + " holds " + (other == "mnist" ? "MNIST" : "Fashion-MNIST") +
                              ", but the model's config is for " + dataset);
  }
}

TEST(Cli, ARunKilledBeforeItsFirstCheckpointTrainsAgainOnResume) {
  // What a SIGKILL during the first epoch's checkpoint write leaves: config.json, a history that
  // ran ahead of the checkpoint, and the checkpoint's temporary. --resume trains the run again.
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const fs::path run = tmp / "run";
  fs::create_directories(run);
  write_file(run / "config.json", R"({"name": "killed", "model": {"layers": [{"type": "Flatten"},
      {"type": "Dense", "units": 10, "activation": "softmax"}]}, "training": {"epochs": 1}})");
  write_file(run / "history.json", R"({"loss": [0.5], "accuracy": [0.9]})");
  write_file(run / ".checkpoint.pt.tmp-12345", "half a checkpoint");
  const CommandResult r = run_mnist("train --resume " + run.string() + " --data " + tmp.path.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("holds no checkpoint (it stopped before its first epoch was saved)"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(run / "checkpoint.pt"));
  EXPECT_FALSE(fs::exists(run / ".checkpoint.pt.tmp-12345"));
  EXPECT_EQ(json::parse(slurp(run / "history.json"))["loss"].size(), 1u);
  // A folder that is no run at all is named as such.
  fs::create_directories(tmp / "empty");
  expect_one_line_error(run_mnist("train --resume " + (tmp / "empty").string()), 1, "is not a run directory");
}

TEST(Cli, ARunKilledInItsFirstEpochResumesWithItsInitialWeightsAndDataOrder) {
  // The run's start is its first checkpoint: killed before the first epoch ends, it resumes from
  // the weights and the order it was given, not from its config's initialisers and shuffle.
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const std::string data = " --data " + tmp.path.string(), wide = " --set model.layers[1].units=300";  // an epoch of a second or so
  mnist::Config config = mnist::load_config_file("configs/paper.json");
  std::get<mnist::DenseSpec>(config.model.layers[1].params).units = 300;
  write_file(tmp / "init.json", mnist::keras_weights_json(*mnist::Model(config.model, mnist::kImageShape, /*seed=*/9)).dump());
  const torch::Tensor perm = mnist::epoch_permutation(60000, /*seed=*/5, /*epoch=*/0);
  write_file(tmp / "order.json", json::array({std::vector<int64_t>(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + 60000)}).dump());
  const std::string given = " --initial-weights " + (tmp / "init.json").string() + " --data-order " + (tmp / "order.json").string();
  const fs::path straight = tmp / "straight", killed = tmp / "killed";
  ASSERT_EQ(run_mnist("train --epochs 1" + wide + data + given + " --out " + straight.string()).exit_code, 0);

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string args = "train --epochs 1" + wide + data + given + " --out " + killed.string() + " >'" + (tmp / "log").string() + "' 2>&1";
    execl("/bin/sh", "sh", "-c", (std::string("exec '") + MNIST_BINARY + "' " + args).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (!fs::exists(killed / "config.json")) {  // written right after the start's checkpoint
    ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0) << "the run ended before its config.json: " << slurp(tmp / "log");
    usleep(200);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(mnist::read_checkpoint(killed / "checkpoint.pt").history.epochs(), 0u) << "killed after its first epoch: too fast a machine";

  const CommandResult resumed = run_mnist("train --resume " + killed.string() + data);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("Resuming after 0 of 1 epochs"), std::string::npos) << resumed.out;
  expect_same_training(mnist::read_checkpoint(straight / "checkpoint.pt"), mnist::read_checkpoint(killed / "checkpoint.pt"));
}

TEST(Cli, ARunStoppedBeforeItsResultsGetsThemOnResume) {
  // What a kill after the last checkpoint and before the results leaves: every epoch in the
  // checkpoint, no metrics.json or model.pt. --resume writes them, the same as the run would have.
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const std::string data = " --data " + tmp.path.string();
  const fs::path run = tmp / "run";
  ASSERT_EQ(run_mnist("train --config configs/quick.json --epochs 1" + data + " --out " + run.string()).exit_code, 0);
  json before = json::parse(slurp(run / "metrics.json"));
  before.erase("seconds");
  const std::string history = slurp(run / "history.json");
  fs::remove(run / "metrics.json");
  fs::remove(run / "model.pt");
  const CommandResult r = run_mnist("train --resume " + run.string() + data);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("trained all 1 epochs but stopped before its results were written: writing them"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(run / "model.pt"));
  json after = json::parse(slurp(run / "metrics.json"));
  after.erase("seconds");
  EXPECT_EQ(after, before);
  EXPECT_EQ(slurp(run / "history.json"), history);
  EXPECT_NE(run_mnist("train --resume " + run.string() + data).out.find("already finished all 1 epochs"), std::string::npos);
#ifdef MNIST_WITH_OPENCV
  // plot draws figures only: the run's records are the trainer's, which may be writing them.
  fs::remove(run / "history.csv");
  ASSERT_EQ(run_mnist("plot " + run.string() + data).exit_code, 0);
  EXPECT_FALSE(fs::exists(run / "history.csv"));
  EXPECT_EQ(slurp(run / "history.json"), history);
#endif
}

TEST(Cli, ATrainingThatCannotFitInMemoryIsRefusedBeforeItStarts) {
  // A hidden layer wide enough that 24 float32 values per parameter pass this machine's memory.
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const double physical = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  const auto units = static_cast<int64_t>(physical / (4.0 * 24.0 * 784.0));
  const fs::path run = tmp / "run";
  expect_one_line_error(run_mnist("train --epochs 1 --data " + tmp.path.string() + " --out " + run.string() +
                                  " --set model.layers[1].units=" + std::to_string(units)),
                        2, "training this config needs about");
  EXPECT_FALSE(fs::exists(run));  // nothing written
}

TEST(Cli, SummaryPrintsTheKerasTableAndResolvedConfig) {
  const CommandResult r = run_mnist("summary --config configs/paper.json --set model.layers[1].units=200");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Total params: 159,010"), std::string::npos) << r.out;  // 784*200+200 + 200*10+10
  EXPECT_NE(r.out.find("\"epsilon\": 1e-07"), std::string::npos) << r.out;
}

TEST(Cli, OutputThatCannotBeWrittenFailsTheCommand) {
  TempDir tmp;
  // The binary with its stdout redirected by the shell as `redirect` says; its exit code and stderr.
  auto run = [&](const std::string& args, const std::string& redirect) {
    const std::string cmd = std::string("'") + MNIST_BINARY + "' " + args + " " + redirect + " 2>'" + (tmp.path / "err").string() + "'";
    const int status = std::system(cmd.c_str());
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(tmp.path / "err"));
  };
  const std::string summary = "summary --config configs/quick.json";
  EXPECT_EQ(run(summary, ">'" + (tmp.path / "out").string() + "'").first, 0);
  for (const char* redirect : {">/dev/full", ">&-"}) {
    const auto [code, err] = run(summary, redirect);
    EXPECT_EQ(code, 1) << redirect << ": " << err;
    EXPECT_NE(err.find("mnist: standard output could not be written"), std::string::npos) << redirect << ": " << err;
  }
  // With stdout closed, what is printed does not land in a file the command writes.
  mnist::Model model(mnist::load_config_file("configs/quick.json").model, mnist::kImageShape, 0);
  mnist::export_model(*model, mnist::load_config_file("configs/quick.json"), tmp.path / "m.pt");
  EXPECT_EQ(run("export --run '" + (tmp.path / "m.pt").string() + "' --out '" + (tmp.path / "w.json").string() + "'", ">&-").first, 1);
  EXPECT_NO_THROW(json::parse(slurp(tmp.path / "w.json")));
}

TEST(Cli, RefusesANonEmptyOutDirectory) {
  TempDir tmp;
  write_file(tmp / "keep.txt", "precious");
  expect_one_line_error(run_mnist("train --epochs 1 --out " + tmp.path.string()), 2, "not an empty directory");
  EXPECT_EQ(slurp(tmp / "keep.txt"), "precious");
}

TEST(Cli, PaperConfigShortRealRunReaches95Percent) {
  if (!fs::exists("data/mnist/train-images-idx3-ubyte"))
    GTEST_SKIP() << "data/mnist is missing: scripts/test.sh fetches it (scripts/fetch-data.sh)";
  TempDir tmp;
  const fs::path run = tmp / "run";
  const CommandResult r = run_mnist("train --config configs/paper.json --epochs 2 --out " + run.string());
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("Total params: 79,510"), std::string::npos);
  EXPECT_NE(r.out.find("Epoch 2/2  1875/1875 [="), std::string::npos) << r.out;

  const json metrics = json::parse(slurp(run / "metrics.json"));
  EXPECT_GE(metrics["test_accuracy"].get<double>(), 0.95);
  EXPECT_EQ(metrics["confusion_matrix"].size(), 10u);
  EXPECT_EQ(metrics["per_class"].size(), 10u);
  const json history = json::parse(slurp(run / "history.json"));
  for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"})
    EXPECT_EQ(history[key].size(), 2u) << key;
  EXPECT_EQ(json::parse(slurp(run / "config.json"))["training"]["epochs"], 2);
  for (const auto& entry : fs::directory_iterator(run))  // no temporary files left behind
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();

  const CommandResult e = run_mnist("evaluate --json --model " + run.string());
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const json again = json::parse(e.out);
  EXPECT_EQ(again["test_accuracy"], metrics["test_accuracy"]);
  EXPECT_EQ(again["confusion_matrix"], metrics["confusion_matrix"]);

  // Figures and the Keras CSVLogger log are in the run directory, as PNGs.
  EXPECT_EQ(slurp(run / "history.csv").rfind("epoch,accuracy,loss,val_accuracy,val_loss\n0,", 0), 0u);
  const std::string png_magic = "\x89PNG";
  const char* figures[] = {"confusion_matrix.png", "confusion_matrix_normalized.png", "accuracy.png", "loss.png", "misclassified.png"};
#ifndef MNIST_WITH_OPENCV
  EXPECT_NE(r.out.find("figures not drawn: this build has no OpenCV"), std::string::npos) << r.out;
  for (const char* f : figures) EXPECT_FALSE(fs::exists(run / f)) << f;
#else
  for (const char* f : figures) EXPECT_EQ(slurp(run / f).substr(0, 4), png_magic) << f;

  // `plot` redraws them from the run directory's files; with --out, elsewhere, leaving the run as it was.
  for (const char* f : figures) fs::remove(run / f);
  const CommandResult p = run_mnist("plot " + run.string());
  ASSERT_EQ(p.exit_code, 0) << p.err;
  for (const char* f : figures) EXPECT_TRUE(fs::exists(run / f)) << f;
  const auto run_files = [&] {
    std::map<std::string, std::string> files;
    for (const auto& entry : fs::directory_iterator(run)) files[entry.path().filename().string()] = slurp(entry.path());
    return files;
  };
  const auto before = run_files();
  const CommandResult po = run_mnist("plot " + run.string() + " --out " + (tmp / "figures" / "new").string());
  ASSERT_EQ(po.exit_code, 0) << po.err;
  for (const char* f : figures) EXPECT_EQ(slurp(tmp / "figures" / "new" / f), slurp(run / f)) << f;
  EXPECT_TRUE(before == run_files());
#endif

  // `compare` lays the run beside a Keras History file.
  write_file(tmp / "keras.json", R"({"accuracy": [0.92, 0.97], "loss": [0.27, 0.09], "val_accuracy": [0.95, 0.96], "val_loss": [0.15, 0.12]})");
  const CommandResult c = run_mnist("compare " + run.string() + " " + (tmp / "keras.json").string() + " --out " + (tmp / "cmp.png").string());
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.out.find("keras "), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("run "), std::string::npos) << c.out;
#ifdef MNIST_WITH_OPENCV
  EXPECT_EQ(slurp(tmp / "cmp.png").substr(0, 4), png_magic);
#else
  EXPECT_FALSE(fs::exists(tmp / "cmp.png"));
#endif
  // Without --out it prints the table and writes nothing.
  const auto listing = [](const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
    return names;
  };
  const auto cwd_before = listing(fs::current_path());
  const CommandResult table_only = run_mnist("compare " + run.string() + " " + (tmp / "keras.json").string());
  ASSERT_EQ(table_only.exit_code, 0) << table_only.err;
  EXPECT_NE(table_only.out.find("keras "), std::string::npos) << table_only.out;
  EXPECT_TRUE(listing(fs::current_path()) == cwd_before);

  // The exported TorchScript model evaluates like the checkpoint.
  ASSERT_TRUE(fs::exists(run / "model.pt"));
  ASSERT_TRUE(fs::exists(run / "model_weights.pt"));
  const CommandResult me = run_mnist("evaluate --json --model " + (run / "model.pt").string());
  ASSERT_EQ(me.exit_code, 0) << me.err;
  EXPECT_EQ(json::parse(me.out)["test_accuracy"], metrics["test_accuracy"]);
  const CommandResult ex = run_mnist("export --run " + run.string() + " --out " + (tmp / "again.pt").string());
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  EXPECT_TRUE(fs::exists(tmp / "again_weights.pt"));
#ifdef MNIST_WITH_KERAS_FILES
  // Out through Keras's .keras file and back in, into folders that do not exist yet: the same model.
  const fs::path keras_file = tmp / "new" / "folder" / "model.keras";
  const CommandResult to_keras = run_mnist("export --run " + run.string() + " --out " + keras_file.string());
  ASSERT_EQ(to_keras.exit_code, 0) << to_keras.err;
  const fs::path back = tmp / "other" / "folder" / "back.pt";
  const CommandResult from_keras = run_mnist("import-keras " + keras_file.string() + " --out " + back.string());
  ASSERT_EQ(from_keras.exit_code, 0) << from_keras.err;
  const CommandResult be = run_mnist("evaluate --json --model " + back.string());
  ASSERT_EQ(be.exit_code, 0) << be.err;
  EXPECT_EQ(json::parse(be.out)["test_loss"], metrics["test_loss"]);
#endif

#ifdef MNIST_WITH_OPENCV
  // predict: MNIST test digits saved as 280x280 black-on-white PNGs come back as their labels.
  const mnist::Split test = mnist::load_split("data/mnist", false);
  fs::create_directory(tmp / "digits");
  for (int i = 0; i < 10; ++i) {
    const torch::Tensor pixels = (test.images[i][0] * 255).round().to(torch::kU8).contiguous();
    cv::Mat digit(28, 28, CV_8UC1, pixels.data_ptr<uint8_t>()), big;
    cv::resize(digit, big, {280, 280}, 0, 0, cv::INTER_CUBIC);
    cv::bitwise_not(big, big);
    cv::imwrite((tmp / "digits" / ("digit" + std::to_string(i) + ".png")).string(), big);
  }
  const CommandResult pr = run_mnist("predict --json --top 2 --model " + (run / "model.pt").string() + " " + (tmp / "digits").string());
  ASSERT_EQ(pr.exit_code, 0) << pr.err;
  // The paper's head is a sigmoid: its outputs are said to be that, not probabilities.
  EXPECT_EQ(json::parse(pr.out)["output_activation"], "sigmoid");
  EXPECT_EQ(json::parse(pr.out)["outputs_are"], "sigmoid outputs");
  const json predictions = json::parse(pr.out)["predictions"];
  ASSERT_EQ(predictions.size(), 10u);
  int correct = 0;
  for (const auto& p : predictions) {
    const std::string image = p["image"];
    const int i = std::stoi(image.substr(image.rfind("digit") + 5));
    correct += p["predicted"].get<int64_t>() == test.labels[i].item<int64_t>();
    EXPECT_EQ(p["top"].size(), 2u);
    EXPECT_GE(p["top"][0]["output"].get<double>(), p["top"][1]["output"].get<double>());
  }
  EXPECT_EQ(predictions[0]["predicted"], test.labels[0].item<int64_t>());  // digit0.png sorts first
  EXPECT_GE(correct, 9) << pr.out;

  // A photo-like image: dark ink, off-centre, on uneven grey "paper" with sensor noise, as JPEG.
  {
    const torch::Tensor pixels = (test.images[1][0] * 255).round().to(torch::kU8).contiguous();
    cv::Mat digit(28, 28, CV_8UC1, pixels.data_ptr<uint8_t>()), big, alpha;
    cv::resize(digit, big, {220, 220}, 0, 0, cv::INTER_CUBIC);
    big.convertTo(alpha, CV_32F, 1.0 / 255);
    cv::Mat paper(360, 480, CV_32F), noise(360, 480, CV_32F);
    for (int y = 0; y < paper.rows; ++y)
      for (int x = 0; x < paper.cols; ++x) paper.at<float>(y, x) = 165.0f + 60.0f * x / paper.cols + 15.0f * y / paper.rows;
    cv::randn(noise, 0, 6);
    paper += noise;
    cv::Mat roi = paper(cv::Rect(230, 90, 220, 220));
    roi = roi.mul(1 - alpha) + 35.0f * alpha;
    cv::Mat photo;
    paper.convertTo(photo, CV_8U);
    cv::imwrite((tmp / "photo.jpg").string(), photo, {cv::IMWRITE_JPEG_QUALITY, 60});
    const CommandResult ph = run_mnist("predict --json --model " + (run / "model.pt").string() + " " + (tmp / "photo.jpg").string());
    ASSERT_EQ(ph.exit_code, 0) << ph.err;
    EXPECT_EQ(json::parse(ph.out)["predictions"][0]["predicted"], test.labels[1].item<int64_t>()) << ph.out;
    const CommandResult text = run_mnist("predict --model " + (run / "model.pt").string() + " " + (tmp / "photo.jpg").string());
    EXPECT_NE(text.out.find(": " + std::to_string(test.labels[1].item<int64_t>()) + "  (sigmoid outputs: "), std::string::npos) << text.out;
  }

#endif

  // `evaluate --out` writes the metrics and the heatmaps elsewhere.
  const CommandResult o = run_mnist("evaluate --model " + run.string() + " --out " + (tmp / "eval").string());
  ASSERT_EQ(o.exit_code, 0) << o.err;
#ifdef MNIST_WITH_OPENCV
  EXPECT_TRUE(fs::exists(tmp / "eval" / "confusion_matrix.png"));
#endif
  EXPECT_EQ(json::parse(slurp(tmp / "eval" / "metrics.json"))["test_accuracy"], metrics["test_accuracy"]);
}

#ifdef MNIST_WITH_OPENCV
TEST(Cli, PredictAnswersForEveryGoodImageAndNamesEachBadOne) {
  TempDir tmp;
  const mnist::Config config = mnist::load_config_file("configs/quick.json");
  mnist::Model model(config.model, mnist::kImageShape, 0);
  mnist::export_model(*model, config, tmp / "m.pt");
  const fs::path dir = tmp / "images";
  fs::create_directories(dir);
  cv::Mat one(64, 64, CV_8UC1, cv::Scalar(255));
  cv::line(one, {32, 10}, {32, 54}, cv::Scalar(0), 4);  // a dark "1" on white paper
  cv::imwrite((dir / "a.png").string(), one);
  cv::imwrite((dir / "b\nnewline.png").string(), one);  // a file name with a newline in it
  std::vector<uchar> jpeg;
  cv::imencode(".jpg", one, jpeg);
  write_file(dir / "c-half.jpg", std::string(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2)));
  cv::imwrite((dir / "d-strip.png").string(), cv::Mat(1, 2100, CV_8UC1, cv::Scalar(255)));  // reduced to 1024x1, not to nothing
  fs::create_symlink("loop-b.png", dir / "loop-a.png");  // a link loop: no image, passed over
  fs::create_symlink("loop-a.png", dir / "loop-b.png");

  const CommandResult r = run_mnist("predict --model " + (tmp / "m.pt").string() + " " + dir.string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;  // one line per good image, the newline shown as \n
  EXPECT_NE(r.out.find((dir / "a.png").string() + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find((dir / "b\\nnewline.png").string() + ": "), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;  // one line per bad image
  EXPECT_NE(r.err.find("c-half.jpg is truncated: its JPEG end-of-image marker is missing"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("d-strip.png has no visible ink"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("OpenCV"), std::string::npos) << r.err;
  const CommandResult loop = run_mnist("predict --model " + (tmp / "m.pt").string() + " " + (dir / "loop-a.png").string());
  expect_one_line_error(loop, 1, "cannot be read (Too many levels of symbolic links)");
}
#endif

// A file name is printed with its control bytes escaped (a newline as \n, ESC as \x1B), so it can neither
// break a line-per-item output nor send the terminal a command.
TEST(Cli, FileNamesArePrintedWithTheirControlBytesEscaped) {
  TempDir tmp;
  const std::string odd = "h\x1b[31mred\nline";
  write_file(tmp / (odd + ".json"), R"({"accuracy": [0.9], "loss": [0.3]})");
  const CommandResult table = run_mnist("compare '" + (tmp / (odd + ".json")).string() + "'");
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("h\\x1B[31mred\\nline "), std::string::npos) << table.out;
  EXPECT_EQ(table.out.find('\x1b'), std::string::npos) << table.out;
  EXPECT_EQ(std::count(table.out.begin(), table.out.end(), '\n'), 3) << table.out;  // header, rule, one run
  const mnist::Config config = mnist::load_config_file("configs/quick.json");
  mnist::Model model(config.model, mnist::kImageShape, 0);
  mnist::export_model(*model, config, tmp / "m.pt");
  const CommandResult exported = run_mnist("export --run " + (tmp / "m.pt").string() + " --out '" + (tmp / (odd + ".json")).string() + "'");
  EXPECT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(exported.out, "Keras weights (model.get_weights() order) written to " + (tmp / "h\\x1B[31mred\\nline.json").string() + "\n");
}

// evaluate reports the accuracy under both argmax rules and, with --predictions, a CSV row per image whose
// counted class and outputs give back the reported accuracy.
TEST(Cli, EvaluateReportsBothAccuracyRulesAndWritesEveryPrediction) {
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const mnist::Config config = mnist::load_config_file("configs/quick.json");
  mnist::Model model(config.model, mnist::kImageShape, 0);
  mnist::export_model(*model, config, tmp / "m.pt");
  const CommandResult r = run_mnist("evaluate --model " + (tmp / "m.pt").string() + " --data " + tmp.path.string() +
                                    " --json --predictions " + (tmp / "p.csv").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json m = nlohmann::json::parse(r.out);
  EXPECT_EQ(m["accuracy_argmax"], "outputs");
  EXPECT_EQ(m["accuracy_by_argmax"]["outputs"].get<double>(), m["test_accuracy"].get<double>());
  EXPECT_TRUE(m["accuracy_by_argmax"]["logits"].is_number());
  std::istringstream csv(slurp(tmp / "p.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "index,label,predicted,output_0,output_1,output_2,output_3,output_4,output_5,output_6,output_7,output_8,output_9");
  int64_t rows = 0, correct = 0;
  while (std::getline(csv, line)) {
    std::vector<double> cells;
    std::istringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) cells.push_back(std::stod(cell));
    ASSERT_EQ(cells.size(), 13u) << line;
    EXPECT_EQ(cells[0], rows++);
    const auto top = std::max_element(cells.begin() + 3, cells.end()) - (cells.begin() + 3);  // the first of a tie, as argmax
    EXPECT_EQ(cells[2], top) << line;
    correct += cells[1] == cells[2];
  }
  int64_t images = 0;
  for (const auto& c : m["per_class"]) images += c["support"].get<int64_t>();
  EXPECT_EQ(rows, images);
  EXPECT_DOUBLE_EQ(static_cast<double>(correct) / static_cast<double>(rows), m["test_accuracy"].get<double>());
}

// --seeds: one run per seed under one folder, two at once, then their summary; the same command again keeps
// the finished seeds; the folder refuses another config's seeds.
TEST(Cli, SeedsTrainOneRunEachAndSummariseThem) {
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const std::string command = "train --config configs/quick.json --epochs 1 --data " + tmp.path.string() + " --seeds 3,5 --jobs 2 --out " +
                              (tmp / "group").string();
  const CommandResult r = run_mnist(command);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  double sum = 0;
  for (const char* seed : {"3", "5"}) {
    const fs::path run = tmp / "group" / (std::string("seed") + seed);
    ASSERT_TRUE(fs::exists(run / "metrics.json")) << run;
    EXPECT_EQ(json::parse(slurp(run / "config.json"))["training"]["seed"], std::stoi(seed));
    sum += json::parse(slurp(run / "metrics.json"))["test_accuracy"].get<double>();
  }
  const json summary = json::parse(slurp(tmp / "group" / "seeds.json"));
  EXPECT_EQ(summary["seeds"], json::array({3, 5}));
  EXPECT_DOUBLE_EQ(summary["summary"]["test accuracy"]["mean"].get<double>(), sum / 2);
  EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
  const CommandResult again = run_mnist(command);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("seed 3: finished before"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("seed 5: finished before"), std::string::npos) << again.out;
  expect_one_line_error(run_mnist(command + " --set training.batch_size=64"), 2, "holds the seeds of another config");
  expect_one_line_error(run_mnist("train --seeds 3-1"), 2, "--seeds 3-1: a range runs up");
  expect_one_line_error(run_mnist("train --seeds 1,1"), 2, "each seed once");
}

TEST(Cli, CompareAndPlotNameTheirBadInputs) {
  TempDir tmp;
  expect_one_line_error(run_mnist("compare " + (tmp / "nothing").string()), 1, "does not exist");
  write_file(tmp / "notes.json", "[1, 2]");
  expect_one_line_error(run_mnist("compare " + (tmp / "notes.json").string()), 1, "not a History");
#ifdef MNIST_WITH_OPENCV
  expect_one_line_error(run_mnist("plot " + tmp.path.string()), 1, "is not a run directory");
  // A History file, or a run folder without a model (a Keras run's), gives its curves alone.
  fs::create_directory(tmp / "keras");
  write_file(tmp / "keras" / "history.json", R"({"accuracy": [0.9, NaN], "loss": [0.3, 0.2]})");
  expect_one_line_error(run_mnist("plot " + (tmp / "keras" / "history.json").string()), 2, "is a History file: give --out DIR");
  for (const fs::path& input : {tmp / "keras", tmp / "keras" / "history.json"}) {
    const CommandResult r = run_mnist("plot " + input.string() + " --out " + (tmp / "figures").string());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("accuracy.png, loss.png"), std::string::npos) << r.out;
    EXPECT_TRUE(fs::exists(tmp / "figures" / "accuracy.png") && fs::exists(tmp / "figures" / "loss.png"));
    EXPECT_FALSE(fs::exists(tmp / "figures" / "confusion_matrix.png"));
    fs::remove_all(tmp / "figures");
  }
#endif
  expect_one_line_error(run_mnist("compare"), 2, "inputs");
}

namespace {

// The last step the live bar drew after `epoch_line` ("Epoch 2/2"): its draws are "\rK/STEPS [===>...".
// 0 before it draws one.
int64_t bar_step(const std::string& log, const std::string& epoch_line) {
  const auto epoch = log.find(epoch_line);
  int64_t last = 0;
  for (auto r = log.find('\r', epoch); epoch != std::string::npos && r != std::string::npos; r = log.find('\r', r + 1)) {
    const size_t digits = log.find_first_not_of("0123456789", r + 1);
    if (digits != std::string::npos && digits > r + 1 && log[digits] == '/') last = std::stoll(log.substr(r + 1, digits - r - 1));
  }
  return last;
}

}  // namespace

TEST(Cli, SigintSavesAndResumeEndsBitIdenticalToAStraightRun) {
  if (!fs::exists("data/mnist/train-images-idx3-ubyte"))
    GTEST_SKIP() << "data/mnist is missing: scripts/test.sh fetches it (scripts/fetch-data.sh)";
  TempDir tmp;
  const fs::path straight = tmp / "straight", interrupted = tmp / "interrupted";
  // 1000 hidden units: an epoch of about 2 s, so the Ctrl-C below lands well inside the second epoch.
  const std::string wide = "--set model.layers[1].units=1000";
  ASSERT_EQ(run_mnist("train --epochs 2 " + wide + " --out " + straight.string()).exit_code, 0);

  // Start the same run on a terminal (a pseudo-terminal, so it draws its live bar), and Ctrl-C it as
  // soon as the bar shows a step of the second epoch: a point in the run, not a guess at its speed.
  int terminal = -1;
  const pid_t pid = forkpty(&terminal, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl(MNIST_BINARY, MNIST_BINARY, "train", "--epochs", "2", "--set", "model.layers[1].units=1000", "--out", interrupted.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string log;
  bool sent = false;
  char buffer[4096];
  for (ssize_t n; (n = read(terminal, buffer, sizeof buffer)) > 0;) {  // until the run ends (EIO)
    log.append(buffer, static_cast<size_t>(n));
    const int64_t step = bar_step(log, "Epoch 2/2");
    if (!sent && step > 0 && step < 1875) {
      kill(pid, SIGINT);
      sent = true;
    }
  }
  close(terminal);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(sent) << "the bar never showed a step of epoch 2:\n" << log;
  ASSERT_TRUE(WIFEXITED(status)) << log;
  ASSERT_EQ(WEXITSTATUS(status), 130) << log;
  EXPECT_NE(log.find("Interrupted (SIGINT) in epoch 2/2 after step"), std::string::npos) << log;
  EXPECT_NE(log.find("Resume with: build/mnist train --resume " + interrupted.string()), std::string::npos) << log;
  for (const auto& entry : fs::directory_iterator(interrupted))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();

  const CommandResult resumed = run_mnist("train --resume " + interrupted.string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("Resuming after 1 of 2 epochs and "), std::string::npos) << resumed.out;
  expect_same_training(mnist::read_checkpoint(straight / "checkpoint.pt"), mnist::read_checkpoint(interrupted / "checkpoint.pt"));
  const auto results = [](const fs::path& run) {  // metrics.json but its timings
    json m = json::parse(slurp(run / "metrics.json"));
    EXPECT_GT(m.at("seconds").at("training").get<double>(), 0.0);
    m.erase("seconds");
    return m;
  };
  EXPECT_EQ(results(straight), results(interrupted));

  const CommandResult again = run_mnist("train --resume " + interrupted.string());
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("already finished all 2 epochs"), std::string::npos) << again.out;
  expect_one_line_error(run_mnist("train --resume " + interrupted.string() + " --epochs 5"), 2, "--resume continues a run");
  expect_one_line_error(run_mnist("train --resume " + (tmp / "nowhere").string()), 1, "is not a run directory: it holds neither checkpoint.pt nor config.json");
}

// runs/latest follows the newest run it is pointed at, and leaves a user's own "latest" alone.
TEST(RunDir, LatestLinksToTheNewestRun) {
  TempDir tmp;
  const fs::path first = mnist::create_run_dir("", "quick", tmp.path), second = mnist::create_run_dir("", "quick", tmp.path);
  ASSERT_NE(first, second);
  EXPECT_FALSE(fs::exists(fs::symlink_status(tmp / "latest")));  // a new directory is not yet a run
  EXPECT_EQ(mnist::point_latest_at(first), "");
  EXPECT_EQ(mnist::point_latest_at(second), "");
  ASSERT_TRUE(fs::is_symlink(tmp / "latest"));
  EXPECT_EQ(fs::read_symlink(tmp / "latest"), second.filename());  // relative: the runs folder can move
  EXPECT_TRUE(fs::equivalent(tmp / "latest", second));
  for (const auto& entry : fs::directory_iterator(tmp.path))  // no temporary link left behind
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  TempDir own;
  fs::create_directory(own / "latest");
  write_file(own / "latest" / "notes.txt", "mine");
  EXPECT_EQ(mnist::point_latest_at(mnist::create_run_dir("", "quick", own.path)),
            (own / "latest").string() + " is a directory of your own, left as it is");
  EXPECT_FALSE(fs::is_symlink(own / "latest"));
  EXPECT_EQ(slurp(own / "latest" / "notes.txt"), "mine");
}

// SIGTERM before training begins (here: pending from the start, delivered as soon as `train`
// installs its handlers, so the data loads after it) ends the command with one line and writes nothing.
TEST(Cli, SigtermWhileTheDataLoadsSaysSoAndWritesNothing) {
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const fs::path run = tmp / "run";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    freopen((tmp / "out.log").c_str(), "w", stdout);
    freopen((tmp / "err.log").c_str(), "w", stderr);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, nullptr);
    kill(getpid(), SIGTERM);  // pending, and still pending in the program exec'd below
    execl(MNIST_BINARY, MNIST_BINARY, "train", "--epochs", "1", "--data", tmp.path.c_str(), "--out", run.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string err = slurp(tmp / "err.log");
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_EQ(WEXITSTATUS(status), 143) << err;
  EXPECT_EQ(err, "mnist: interrupted (SIGTERM) before training began; nothing was written\n");
  EXPECT_FALSE(fs::exists(run));
}

// Lock-step replay, the way scripts/keras_lockstep.py drives it: a run started from given weights
// on a given data order trains what a run that drew them itself trains, bit for bit. The weights go
// out as Keras's get_weights() JSON (export --out FILE.json) and come back in exactly.
TEST(Cli, GivenInitialWeightsAndDataOrderReplayARunExactly) {
  TempDir tmp;
  write_synthetic_mnist(tmp.path);
  const std::string data = " --data " + tmp.path.string();
  const fs::path straight = tmp / "straight", replay = tmp / "replay", subset = tmp / "subset";
  ASSERT_EQ(run_mnist("train --epochs 1" + data + " --out " + straight.string()).exit_code, 0);
  // The straight run's initial weights, drawn as it drew them (configs/paper.json, seed 0).
  const mnist::Config config = mnist::load_config_file("configs/paper.json");
  mnist::Model initial(config.model, mnist::kImageShape, /*seed=*/0);
  const json init = mnist::keras_weights_json(*initial);
  ASSERT_EQ(init.size(), 4u);  // kernel [784, 100], bias, kernel [100, 10], bias
  EXPECT_EQ(init[0].size(), 784u);
  write_file(tmp / "init.json", init.dump());
  // The order the straight run drew for its one epoch.
  const torch::Tensor perm = mnist::epoch_permutation(60000, /*seed=*/0, /*epoch=*/0);
  write_file(tmp / "order.json", json::array({std::vector<int64_t>(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + 60000)}).dump());
  const CommandResult r = run_mnist("train --epochs 1 --set training.seed=7" + data + " --initial-weights " + (tmp / "init.json").string() +
                                    " --data-order " + (tmp / "order.json").string() + " --out " + replay.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Initial weights from "), std::string::npos) << r.out;
  const mnist::Checkpoint a = mnist::read_checkpoint(straight / "checkpoint.pt"), b = mnist::read_checkpoint(replay / "checkpoint.pt");
  expect_same_training(a, b);
  ASSERT_TRUE(b.data_order.defined());  // carried by the checkpoint, for --resume
  EXPECT_TRUE(b.data_order[0].equal(perm));
  EXPECT_FALSE(a.data_order.defined());
  // export --out FILE.json writes the trained weights in that layout.
  const CommandResult exported = run_mnist("export --run " + replay.string() + " --out " + (tmp / "trained.json").string());
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(json::parse(slurp(tmp / "trained.json")), mnist::keras_weights_json(*mnist::model_with_params(b.config, b.params, "b")));
  EXPECT_NE(json::parse(slurp(tmp / "trained.json")), init);

  // An epoch may be a chosen subset: 2 epochs of 64 samples are 2 steps each.
  std::vector<int64_t> first(64), second(64);
  for (int64_t i = 0; i < 64; ++i) first[i] = i, second[i] = 1000 + 2 * i;
  write_file(tmp / "subset.json", json::array({first, second}).dump());
  const CommandResult s = run_mnist("train --epochs 2" + data + " --data-order " + (tmp / "subset.json").string() + " --out " + subset.string());
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("Epoch 2/2  2/2 ["), std::string::npos) << s.out;
}

TEST(Cli, BenchReportsSecondsPerEpochAsJson) {
  if (!fs::exists("data/mnist/train-images-idx3-ubyte"))
    GTEST_SKIP() << "data/mnist is missing: scripts/test.sh fetches it (scripts/fetch-data.sh)";
  const CommandResult r = run_mnist("bench --epochs 1 --warmup 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);  // shape only: speed is compared in scripts/bench.sh, never asserted
  EXPECT_GT(j["seconds_per_epoch"].get<double>(), 0.0);
  EXPECT_EQ(j["epoch_seconds"].size(), 1u);
  EXPECT_EQ(j["batch_size"], 32);
  EXPECT_GT(j["peak_rss_mb"].get<double>(), 0.0);
  EXPECT_EQ(j["peak_gpu_mb"], -1);  // on the CPU
  EXPECT_EQ(j["step"], "fused");    // the paper's model on the CPU
  const json autograd = json::parse(run_mnist("bench --epochs 1 --warmup 0 --json --set training.fused=false").out);
  EXPECT_EQ(autograd["step"], "autograd (training.fused is false)");
  expect_one_line_error(run_mnist("bench --epochs 0"), 2, "--epochs");
}

TEST(Cli, EarlyStoppingEndsARunNormallyAndResumeKnowsItIsDone) {
  TempDir tmp;
  fs::create_directories(tmp / "data");
  write_synthetic_mnist(tmp / "data");
  write_file(tmp / "es.json", R"({"name": "es", "model": {"layers": [{"type": "Flatten"},
      {"type": "Dense", "units": 10, "activation": "softmax"}]},
    "training": {"epochs": 6, "batch_size": 1024,
      "early_stopping": {"monitor": "loss", "min_delta": 100, "patience": 1, "restore_best_weights": true}}})");
  const fs::path run = tmp / "run";
  const CommandResult r = run_mnist("train --config " + (tmp / "es.json").string() + " --data " + (tmp / "data").string() +
                                    " --out " + run.string());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("Stopped: early stopping: loss has not improved for 1 epochs (best: epoch 1); restored that epoch's weights"),
            std::string::npos)
      << r.out;
  const auto metrics = nlohmann::json::parse(slurp(run / "metrics.json"));
  EXPECT_EQ(metrics["epochs_completed"], 2);
  EXPECT_TRUE(metrics.contains("stopped_early"));
  const CommandResult again = run_mnist("train --resume " + run.string() + " --data " + (tmp / "data").string());
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("was ended by early stopping after 2 epochs; nothing to resume"), std::string::npos) << again.out;
}
