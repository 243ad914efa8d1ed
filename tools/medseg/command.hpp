// A subcommand of the medseg command: its name, a one-line summary, and what it runs.
// main.cpp holds the list; each command lives in its own <name>_command.cpp.
#pragma once

#include <span>
#include <string_view>

namespace medseg::tool {

using Args = std::span<const std::string_view>;

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(Args args);  // args after the command's name; returns the exit code
};

int bench_command(Args args);
int prepare_command(Args args);
int info_command(Args args);
int convert_command(Args args);
int train_command(Args args);
int val_command(Args args);
int export_command(Args args);
int infer_command(Args args);
int demo_command(Args args);
int nnunet_command(Args args);

}  // namespace medseg::tool
