// medseg bench [NAME] [--json] [--threads N] [--quick] [--input FILE] [--device cpu|cuda]
#include <iostream>
#include <string>

#include "command.hpp"
#include "harness.hpp"
#include "medseg/core/error.hpp"
#include "medseg/core/parallel.hpp"

namespace medseg::tool {

int bench_command(Args args) {
  bench::Options options;
  std::string_view name;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--json") {
      options.json = true;
    } else if (args[i] == "--quick") {
      options.quick = true;
    } else if (args[i] == "--threads" && i + 1 < args.size()) {
      set_num_threads(std::stoi(std::string(args[++i])));
    } else if (args[i] == "--input" && i + 1 < args.size()) {
      options.input = std::string(args[++i]);
    } else if (args[i] == "--device" && i + 1 < args.size()) {
      options.device = std::string(args[++i]);
      if (options.device != "cpu" && options.device != "cuda")
        throw Error{{.where = "medseg bench", .field = "--device", .expected = "cpu or cuda", .actual = options.device}};
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "usage: medseg bench [NAME] [--json] [--threads N] [--quick] [--input FILE] [--device cpu|cuda]\n"
                   "Runs benchmark NAME and its peer in the same run and prints both times and the speedup\n"
                   "(peer_ms / ours_ms). --json prints one JSON object. Without NAME, lists the benchmarks.\n"
                   "Threads: --threads N, else MEDSEG_NUM_THREADS, else all cores.\n"
                   "--input FILE: a real volume for the benchmarks that take one (preprocess: a CT scan in\n"
                   "any format medseg reads, used instead of the synthetic 512x512x200 volume).\n"
                   "--device cuda: the GPU version of the benchmarks that have one (train, infer, preprocess),\n"
                   "with the peer on the same GPU; needs a medseg built with CUDA and a GPU.\n";
      return 0;
    } else if (name.empty() && !args[i].starts_with("-")) {
      name = args[i];
    } else {
      throw Error{{.where = "medseg bench", .field = "argument", .expected = "NAME, --json, --threads N, --quick or --input FILE",
                   .actual = "\"" + std::string(args[i]) + "\""}};
    }
  }
  options.threads = num_threads();
  if (name.empty()) {
    std::cout << "benchmarks (medseg bench NAME [--json]):\n";
    for (const auto& b : bench::all_benchmarks()) std::cout << "  " << b.name << "  " << b.summary << "\n";
    return 0;
  }
  for (const auto& b : bench::all_benchmarks()) {
    if (b.name != name) continue;
    if (!options.input.empty() && !b.takes_input) {
      std::string takers;
      for (const auto& t : bench::all_benchmarks())
        if (t.takes_input) takers += (takers.empty() ? "" : ", ") + std::string(t.name);
      throw Error{{.where = "medseg bench " + std::string(name), .field = "--input",
                   .expected = "no --input (benchmarks that take one: " + takers + ")", .actual = options.input}};
    }
    if (options.device != "cpu" && !b.takes_device) {
      std::string takers;
      for (const auto& t : bench::all_benchmarks())
        if (t.takes_device) takers += (takers.empty() ? "" : ", ") + std::string(t.name);
      throw Error{{.where = "medseg bench " + std::string(name), .field = "--device",
                   .expected = "cpu (benchmarks that run on a GPU: " + takers + ")", .actual = options.device}};
    }
    bench::report(b, options, b.run(options));
    return 0;
  }
  std::string known;
  for (const auto& b : bench::all_benchmarks()) known += (known.empty() ? "" : ", ") + std::string(b.name);
  throw Error{{.where = "medseg bench", .field = "NAME", .expected = "one of " + known,
               .actual = "\"" + std::string(name) + "\""}};
}

}  // namespace medseg::tool
