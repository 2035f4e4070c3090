// command_train: what `mnist train --resume RUN` does with RUN, decided from RUN's files alone
// (the rest of the command is command_train.cpp's).
#pragma once
#include <optional>
#include <string>

#include "config/config.h"
#include "interop/checkpoint.h"

namespace mnist {

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
