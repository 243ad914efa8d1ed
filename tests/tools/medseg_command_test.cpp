// The medseg command as a user runs it: exit codes, help, version, bench.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <string>

#include "medseg/version.hpp"
#include "run_medseg.hpp"

using tools_test::run_medseg;

TEST_CASE("medseg --version and --help") {
  auto v = run_medseg("--version");
  CHECK(v.code == 0);
  CHECK(v.out == std::string("medseg ") + medseg::version + "\n");
  auto h = run_medseg("--help");
  CHECK(h.code == 0);
  CHECK_THAT(h.out, Catch::Contains("usage: medseg COMMAND") && Catch::Contains("bench"));
  CHECK(run_medseg("").code == 0);
}

TEST_CASE("an unknown command fails with a hint") {
  auto r = run_medseg("frobnicate");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Catch::Contains("unknown command \"frobnicate\"") && Catch::Contains("--help"));
}

TEST_CASE("medseg bench lists benchmarks and refuses unknown ones") {
  auto l = run_medseg("bench");
  CHECK(l.code == 0);
  CHECK_THAT(l.out, Catch::Contains("core"));
  auto u = run_medseg("bench nosuch");
  CHECK(u.code == 1);
  CHECK_THAT(u.out, Catch::Contains("one of core") && Catch::Contains("\"nosuch\""));
  CHECK(run_medseg("bench core --bogus").code == 1);
}

TEST_CASE("medseg bench --json prints one object with the peer measured in the same run") {
  auto r = run_medseg("bench core --json --quick --threads 2");
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["benchmark"] == "core");
  CHECK(j["machine"]["threads"] == 2);
  REQUIRE(j["results"].size() == 4);
  for (const auto& row : j["results"]) {
    CHECK(row["ours_ms"].get<double>() > 0);
    INFO(row.dump());
    REQUIRE(row["peer_ms"].is_number());  // numpy is installed by scripts/setup.sh --python
    CHECK(row["speedup"].get<double>() == Approx(row["peer_ms"].get<double>() / row["ours_ms"].get<double>()));
  }
}
