// clock: the wall-clock seconds every reported timing is measured in (History's epoch_seconds,
// metrics.json's "seconds", the baselines' fit and predict times).
#pragma once
#include <chrono>

namespace mnist {

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace mnist
