// main: the one place errors are caught. A user sees one line on stderr, never a c10 backtrace:
// exit 2 for a bad flag or config, 1 for a runtime failure (data, files, a diverged run).
#include <iostream>

#include <c10/util/Exception.h>

#include "cli.h"
#include "errors.h"

int main(int argc, char** argv) {
  try {
    return mnist::run_cli(argc, argv);
  } catch (const mnist::UsageError& e) {
    std::cerr << "mnist: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    // what_without_backtrace() can still span lines (LibTorch appends context); keep the first.
    std::string msg = e.what_without_backtrace();
    std::cerr << "mnist: " << msg.substr(0, msg.find('\n')) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mnist: " << e.what() << "\n";
    return 1;
  }
}
