// main: the one place errors are caught. A user sees one line on stderr, never a c10 backtrace:
// exit 2 for a bad flag or config, 1 for a runtime failure (data, files, a diverged run).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <iostream>
#include <new>
#include <sstream>
#include <string_view>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <c10/util/Exception.h>

#include "app/cli.h"
#include "app/command.h"
#include "config/errors.h"
#include "config/user_input.h"
#include "interop/rundir.h"

namespace {

// glibc's malloc gives a freed block above its mmap threshold (128 KB at first) back to the kernel,
// and trims free memory off the heap's top, so an autograd step's large tensors (a convolution's
// activations are megabytes) are faulted in again, page by page, every step. Kept instead: blocks
// up to kMmapThreshold come from the heap, and up to kTrimThreshold of it stays when free.
constexpr int kMmapThreshold = 64 << 20;   // bytes
constexpr int kTrimThreshold = 256 << 20;  // bytes

void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
#endif
}

// A closed standard stream (`mnist summary >&-`) would give its number to the next file opened,
// and what is printed would land in that file. Each closed one is taken by /dev/null opened
// read-only, so that writing to it fails, and is reported (finish).
void occupy_closed_standard_streams() {
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF) ::open("/dev/null", O_RDONLY);
}

// Nothing catches an exception thrown before main: a library's constructor out of memory (under a
// small `ulimit -v`) would end in std::terminate's two lines. One line instead, then exit 1.
[[noreturn]] void failed_before_main() {
  static const char kMemory[] =
      "mnist: out of memory while its libraries load: LibTorch and OpenCV need about 650 MB of address space (see ulimit -v)\n";
  static const char kOther[] = "mnist: a library failed while loading, before the program began\n";
  bool memory = false;
  try {
    if (const std::exception_ptr e = std::current_exception()) std::rethrow_exception(e);
  } catch (const std::bad_alloc&) {
    memory = true;
  } catch (...) {
  }
  const std::string_view line = memory ? kMemory : kOther;
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  ::_exit(1);
}

// OpenBLAS, linked through OpenCV's core and never on this program's math path, starts a thread with
// its own buffers per core as it loads, and under an address-space limit retries a failed allocation
// forever. Under such a limit the program restarts itself once, before any library has started, with
// OPENBLAS_NUM_THREADS=1 (unless the environment names a number); it then starts within 650 MB.
void one_openblas_thread_under_a_memory_limit(char** argv, char** env) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
  constexpr std::string_view kName = "OPENBLAS_NUM_THREADS=";
  std::vector<char*> with_it;
  for (char** e = env; e && *e; ++e) {
    if (std::string_view(*e).substr(0, kName.size()) == kName) return;
    with_it.push_back(*e);
  }
  static char kOneThread[] = "OPENBLAS_NUM_THREADS=1";
  with_it.push_back(kOneThread);
  with_it.push_back(nullptr);
  ::execve("/proc/self/exe", argv, with_it.data());  // returns only when it fails: start as we are
}

// Runs before any shared library's constructors (an executable's .preinit_array comes first; libc's
// environment functions are not ready yet, hence `env`).
void before_libraries(int, char** argv, char** env) {
  occupy_closed_standard_streams();
  one_openblas_thread_under_a_memory_limit(argv, env);
  std::set_terminate(failed_before_main);  // main() puts the default back
}
__attribute__((section(".preinit_array"), used)) void (*const kBeforeLibraries)(int, char**, char**) = before_libraries;

// Output that could not be written (a closed stdout, a full disk, /dev/full) fails the command.
int finish(int code) {
  std::cout.flush();
  if (std::cout || code != 0) return code;
  std::cerr << "mnist: standard output could not be written (closed, or its disk is full): the command's output is lost\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::set_terminate(nullptr);  // (the default: failed_before_main was for the libraries' start-up)
  mnist::end_cleanly_on_signals();
  keep_freed_memory();
  try {
    mnist::start_threads();
    return finish(mnist::run_cli(argc, argv));
  } catch (const mnist::UsageError& e) {
    std::cerr << "mnist: " << mnist::printable(e.what()) << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "mnist: out of memory: the model, batch or data does not fit in this machine's memory (fewer units or "
                 "filters, or a smaller batch_size)\n";
    return 1;
  } catch (const c10::Error& e) {
    // what_without_backtrace() can still span lines (TorchScript adds source context); keep the
    // first non-empty one.
    std::istringstream lines(e.what_without_backtrace());
    std::string line;
    while (std::getline(lines, line) && line.find_first_not_of(" \t\r") == std::string::npos) {
    }
    if (line.find("alloc") != std::string::npos || line.find("out of memory") != std::string::npos)  // CPU or CUDA allocator
      std::cerr << "mnist: out of memory: the model, batch or data does not fit in this device's memory (fewer units or "
                   "filters, or a smaller batch_size)\n";
    else
      std::cerr << "mnist: LibTorch: " << (line.empty() ? "an error without a message" : line) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mnist: " << mnist::printable(e.what()) << "\n";
    return 1;
  }
}
