// rundir: what a run leaves on disk. A run directory (runs/<config-name>-<timestamp>/) holds
// config.json (resolved config), history.json (Keras History keys), metrics.json and
// checkpoint.pt (checkpoint.h). Every file is written under a temporary name and renamed into
// place, so a reader never sees a half-written file.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "train/history.h"

namespace mnist {

namespace fs = std::filesystem;

// Replaces only a regular file (or nothing): a link, device, FIFO, socket or folder at `path` is
// an error, never overwritten.
void write_file_atomic(const fs::path& path, const std::string& content);
// Checks an output a user named with `flag`, before any slow work: refuses (UsageError) a path that
// exists and is not a regular file, or that is one of the command's `inputs` under any name.
void check_output_file(const fs::path& out, const std::string& flag, const std::vector<fs::path>& inputs = {});
// The same for a model written as `out` and its state_dict `weights` (export.h weights_path_for),
// which also refuses a `weights` file that exists without `out`: a file of someone else's, not the
// pair's.
void check_model_outputs(const fs::path& out, const fs::path& weights, const std::string& flag, const std::vector<fs::path>& inputs);
// SIGINT, SIGTERM and SIGHUP end the program as they would, after removing the temporary being
// written; SIGXFSZ is ignored, so a write past `ulimit -f` fails with a message. (Training
// installs its own handlers while it runs: command_train.cpp.)
void end_cleanly_on_signals();
// Removes the temporaries (".NAME.tmp-PID") that a process killed while writing left in `dir`.
void remove_temporaries(const fs::path& dir);

// `out` empty: runs/<name>-<YYYYmmdd-HHMMSS>[-N] under `runs_root`, never an existing directory.
// `out` given: created if missing; refused (UsageError) if it exists and is not empty.
// Throws UsageError for an --out that create_run_dir would refuse; call it before slow work.
void check_out_dir(const std::string& out);
fs::path create_run_dir(const std::string& out, const std::string& name, const fs::path& runs_root = "runs");

// Points <runs root>/latest, a relative symbolic link, at `run_dir` (atomically: a new link renamed
// over the old). A "latest" that is not a link (the user's own file or directory) is left alone, as
// is a file system without links: returns why, or "" when the link now points at `run_dir`.
std::string point_latest_at(const fs::path& run_dir);

// history.json and history.csv (Keras CSVLogger format), both atomically.
void save_history(const fs::path& dir, const History& history);

}  // namespace mnist
