// cli: the `mnist` command line (CLI11). Parses flags, then runs the chain
// config -> dataset -> model -> trainer -> run directory. Errors propagate as exceptions to main().
#pragma once

namespace mnist {

int run_cli(int argc, char** argv);

}  // namespace mnist
