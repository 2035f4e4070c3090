// command_seeds: `mnist train --seeds A-B`: the config trained once per seed, as child processes of
// this program (each an ordinary `train` into DIR/seed<S>), then the seeds' summary. See command_train.h.
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <csignal>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "app/command_train.h"
#include "config/errors.h"
#include "config/user_input.h"
#include "interop/rundir.h"

namespace mnist {
namespace {

// Set by SIGINT/SIGTERM/SIGHUP: no seed starts after it, and the running ones are told once.
volatile std::sig_atomic_t g_group_signal = 0;
extern "C" void stop_group(int sig) { g_group_signal = sig; }

// The group's folder: new (with the resolved config in config.json), or the same command's earlier
// one, whose config.json must be this config.
fs::path group_dir(const TrainFlags& t, const Config& config) {
  const fs::path dir = t.out.empty() ? create_run_dir("", config.name + "-seeds") : fs::path(t.out);
  const nlohmann::json resolved = to_json(config);
  std::error_code ec;
  if (fs::exists(dir / "config.json", ec)) {
    if (read_json_file(dir / "config.json", /*max_depth=*/32) != resolved)
      throw UsageError("--out " + t.out + " holds the seeds of another config; choose a new folder");
    return dir;
  }
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    throw UsageError("--out " + t.out + ": exists and is neither empty nor an earlier --seeds folder; choose a new path");
  write_file_atomic(dir / "config.json", resolved.dump(2) + "\n");
  return dir;
}

// The `train` arguments for one seed: resume it where it has a run directory, else start it.
std::vector<std::string> seed_args(const TrainFlags& t, const fs::path& dir, uint64_t seed, int threads) {
  const fs::path run = dir / ("seed" + std::to_string(seed));
  std::vector<std::string> args = {"train", "--threads", std::to_string(threads)};
  std::error_code ec;
  if (fs::exists(run / "checkpoint.pt", ec) || fs::exists(run / "config.json", ec)) {
    args.insert(args.end(), {"--resume", run.string()});
  } else {
    fs::remove_all(run, ec);  // a folder left before its run could start
    args.insert(args.end(), {"--config", (dir / "config.json").string(), "--seed", std::to_string(seed), "--out", run.string(),
                             "--device", t.device});
    if (!t.initial_weights.empty()) args.insert(args.end(), {"--initial-weights", t.initial_weights});
    if (!t.data_order.empty()) args.insert(args.end(), {"--data-order", t.data_order});
  }
  if (!t.data.empty()) args.insert(args.end(), {"--data", t.data});
  return args;
}

// Starts this program with `args`, its output in `log`, in a process group of its own (the group's
// signals are passed on once, by stop_group's caller) and ended with SIGTERM if this process dies.
pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("cannot start a seed's run: ") + std::strerror(errno));
  if (pid > 0) return pid;
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) ::dup2(fd, STDOUT_FILENO), ::dup2(fd, STDERR_FILENO);
  std::vector<char*> argv = {const_cast<char*>("mnist")};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  ::_exit(127);
}

// The seeds' runs, as child processes, at most `jobs` at once. A stop signal (g_group_signal) starts no
// more, and is passed on once to each running one, which saves where it is.
class SeedRuns {
 public:
  SeedRuns(fs::path dir, int jobs) : dir_(std::move(dir)), jobs_(jobs) {}
  // Starts seed `s` once a slot is free; false (nothing started) once a stop signal came.
  bool start(uint64_t s, const std::vector<std::string>& args) {
    while (static_cast<int>(running_.size()) >= jobs_ && !g_group_signal) wait_one();
    if (g_group_signal) return false;
    running_[spawn(args, log_of(s))] = s;
    return true;
  }
  void wait_all() {
    while (!running_.empty()) {
      if (g_group_signal && !told_) {
        told_ = true;
        for (const auto& [pid, s] : running_) ::kill(pid, static_cast<int>(g_group_signal));
      }
      wait_one();
    }
  }
  int failed() const { return failed_; }

 private:
  fs::path log_of(uint64_t s) const { return dir_ / ("seed" + std::to_string(s) + ".log"); }
  void wait_one() {  // polls, so that a signal is passed on at once
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      ::usleep(50000);
      return;
    }
    if (pid < 0) throw std::runtime_error(std::string("waiting for the seeds' runs: ") + std::strerror(errno));
    const uint64_t s = running_.at(pid);
    running_.erase(pid);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    failed_ += !ok;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::cout << "seed " << s << ": " << (ok ? std::string("done") : "ended with status " + std::to_string(code)) << " ("
              << printable(log_of(s).string()) << ")\n" << std::flush;
  }
  fs::path dir_;
  int jobs_;
  std::map<pid_t, uint64_t> running_;
  int failed_ = 0;
  bool told_ = false;
};

struct SeedFigure {
  const char* name;
  std::vector<double> values;  // one per seed
};

// Each seed's final figures from its run directory, and their summary, printed and written.
int summarise(const fs::path& dir, const std::vector<uint64_t>& seeds) {
  std::vector<SeedFigure> figures = {{"final reported accuracy", {}}, {"test accuracy", {}}, {"test loss", {}}};
  nlohmann::json runs = nlohmann::json::object();
  for (const uint64_t s : seeds) {
    const fs::path run = dir / ("seed" + std::to_string(s));
    const History h = History::from_json(read_json_file(run / "history.json", 16), (run / "history.json").string());
    const nlohmann::json m = read_json_file(run / "metrics.json", 16);
    const double values[] = {h.accuracy.empty() ? NAN : h.accuracy.back(), m["test_accuracy"].get<double>(), m["test_loss"].get<double>()};
    for (size_t i = 0; i < figures.size(); ++i) figures[i].values.push_back(values[i]);
    runs[std::to_string(s)] = {{"final_reported_accuracy", values[0]}, {"test_accuracy", values[1]}, {"test_loss", values[2]}};
  }
  nlohmann::json summary = nlohmann::json::object();
  std::cout << "\n" << std::left << std::setw(26) << "figure" << std::right << std::setw(10) << "mean" << std::setw(10) << "sd"
            << std::setw(10) << "min" << std::setw(10) << "max" << "   (" << seeds.size() << " seeds)\n" << std::fixed << std::setprecision(5);
  for (const SeedFigure& f : figures) {
    const auto n = static_cast<double>(f.values.size());
    double mean = 0, ss = 0;
    for (const double v : f.values) mean += v / n;
    for (const double v : f.values) ss += (v - mean) * (v - mean);
    const double sd = n > 1 ? std::sqrt(ss / (n - 1)) : 0;
    const auto [lo, hi] = std::minmax_element(f.values.begin(), f.values.end());
    summary[f.name] = {{"mean", mean}, {"sd", sd}, {"min", *lo}, {"max", *hi}};
    std::cout << std::left << std::setw(26) << f.name << std::right << std::setw(10) << mean << std::setw(10) << sd << std::setw(10)
              << *lo << std::setw(10) << *hi << "\n";
  }
  write_file_atomic(dir / "seeds.json", nlohmann::json{{"seeds", seeds}, {"runs", runs}, {"summary", summary}}.dump(2) + "\n");
  std::cout << "seeds' summary written to " << printable((dir / "seeds.json").string()) << "\n";
  return 0;
}

}  // namespace

std::vector<uint64_t> parse_seeds(const std::string& text) {
  std::vector<uint64_t> seeds;
  std::stringstream parts(text);
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
      throw UsageError("--seeds " + text.substr(0, 40) + ": expected A-B or A,B,... of whole numbers (e.g. 0-9)");
    return std::stoull(s);
  };
  for (std::string part; std::getline(parts, part, ',');) {
    const auto dash = part.find('-');
    const uint64_t lo = number(part.substr(0, dash)), hi = dash == std::string::npos ? lo : number(part.substr(dash + 1));
    if (hi < lo || hi - lo >= 1000) throw UsageError("--seeds " + text.substr(0, 40) + ": a range runs up, at most 1000 seeds");
    for (uint64_t s = lo; s <= hi; ++s) seeds.push_back(s);
  }
  std::vector<uint64_t> sorted = seeds;
  std::sort(sorted.begin(), sorted.end());
  if (seeds.empty() || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end() || seeds.size() > 1000)
    throw UsageError("--seeds " + text.substr(0, 40) + ": each seed once, at most 1000");
  return seeds;
}

int run_seeds(const TrainFlags& t) {
  const std::vector<uint64_t> seeds = parse_seeds(t.seeds);
  if (!t.resume.empty() || t.config.seed >= 0) throw UsageError("--seeds sets each run's seed: drop --seed and --resume");
  const Config config = resolve_config(t.config);
  const fs::path dir = group_dir(t, config);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int jobs = t.jobs > 0 ? t.jobs : std::min(cores, static_cast<int>(seeds.size()));
  const int threads = t.threads > 0 ? t.threads : std::max(1, cores / jobs);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, stop_group);
  SeedRuns runs(dir, jobs);
  for (const uint64_t s : seeds) {
    if (fs::exists(dir / ("seed" + std::to_string(s)) / "metrics.json")) {
      std::cout << "seed " << s << ": finished before\n";
      continue;
    }
    if (!runs.start(s, seed_args(t, dir, s, threads))) break;
    std::cout << "seed " << s << ": training (" << threads << " thread" << (threads > 1 ? "s" : "") << ")\n" << std::flush;
  }
  runs.wait_all();
  if (g_group_signal) {
    std::cerr << "mnist: interrupted; the seeds' runs saved where they stopped: the same command continues them\n";
    return 128 + static_cast<int>(g_group_signal);
  }
  if (runs.failed()) throw std::runtime_error(std::to_string(runs.failed()) + " of the seeds' runs failed; see their logs in " + dir.string());
  return summarise(dir, seeds);
}

}  // namespace mnist
