// errors: the two kinds of failure a user can meet. main() catches them once and maps them to
// exit codes: UsageError (a bad flag or config, fix the command) -> 2, anything else -> 1.
#pragma once
#include <stdexcept>
#include <string>

namespace mnist {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A config value at fault, named by its JSON path: "config error at training.epochs: must be >= 1 (got 0)".
struct ConfigError : UsageError {
  ConfigError(const std::string& path, const std::string& problem)
      : UsageError("config error at " + path + ": " + problem), path(path), problem(problem) {}
  // The same error with where it came from appended: " [in configs/x.json]".
  ConfigError in(const std::string& origin) const { return ConfigError(path, problem + " [" + origin + "]"); }
  std::string path, problem;
};

}  // namespace mnist
