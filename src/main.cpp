// main: the one place errors are caught. A user sees one line on stderr, never a c10 backtrace:
// exit 2 for a bad flag or config, 1 for a runtime failure (data, files, a diverged run).
#include <iostream>
#include <new>
#include <sstream>

#include <c10/util/Exception.h>

#include "cli.h"
#include "errors.h"

int main(int argc, char** argv) {
  try {
    return mnist::run_cli(argc, argv);
  } catch (const mnist::UsageError& e) {
    std::cerr << "mnist: " << e.what() << "\n";
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
    std::cerr << "mnist: " << e.what() << "\n";
    return 1;
  }
}
