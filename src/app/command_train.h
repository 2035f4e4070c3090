// command_train: what `mnist train --resume RUN` does with RUN, decided from RUN's files alone
// (the rest of the command is command_train.cpp's).
#pragma once
#include <optional>
#include <string>

#include "app/command.h"
#include "config/config.h"
#include "interop/checkpoint.h"

namespace mnist {

struct TrainFlags {
  ConfigFlags config;
  std::string resume, device = "auto", data, out;
  std::string initial_weights;  // Keras weights to start from, instead of the initialisers
  std::string data_order;       // per-epoch orders to train on, instead of our shuffle
  int threads = 0;
  std::string seeds;  // --seeds A-B or A,B,...: one run per seed (command_seeds.cpp)
  int jobs = 0;       // with --seeds: runs at once (0: one per core)
};

// `train --seeds`: one run of the config per seed, each its own run directory DIR/seed<S> (DIR: --out,
// or runs/<name>-seeds-<timestamp>), up to --jobs at once as child processes of this program. The same
// command again keeps the finished seeds and resumes the others. Ends with the seeds' summary: mean,
// sample standard deviation, min and max of each final figure, printed and in DIR/seeds.json.
int run_seeds(const TrainFlags& t);
// "0-9" or "0,3,7" (whole numbers, each once); throws UsageError naming --seeds.
std::vector<uint64_t> parse_seeds(const std::string& text);

struct ResumePlan {
  enum class Action {
    resume,         // continue from the checkpoint (or, every epoch trained, write the results)
    restart,        // no checkpoint yet (killed before the first epoch was saved): train again from config.json
    finished,       // every epoch ran and the results are written: nothing to do
    stopped_early,  // early stopping ended it: nothing to do
  };
  Action action = Action::resume;
  Config config;                         // the run's own
  std::optional<Checkpoint> checkpoint;  // resume, finished, stopped_early
  std::string message;                   // what to tell the user (empty for resume)
};

// Reads RUN's checkpoint.pt (or, without one, its config.json). Throws std::runtime_error when RUN
// holds neither, or a file is unreadable.
ResumePlan plan_resume(const std::string& run_dir);

}  // namespace mnist
