#include "medseg/core/error.hpp"

#include <catch2/catch.hpp>

using namespace medseg;

TEST_CASE("an Error message names where what expected and actual") {
  const Error e{{.where = "nifti: scan.nii.gz", .field = "dim[1]", .expected = "a positive size", .actual = "-3"}};
  CHECK(std::string(e.what()) == "nifti: scan.nii.gz: dim[1]: expected a positive size, got -3");
  CHECK(e.info().field == "dim[1]");
}

TEST_CASE("Error parts may be left out") {
  CHECK(std::string(Error{{.where = "w", .detail = "d"}}.what()) == "w (d)");
  CHECK(std::string(Error{{.where = "w", .actual = "x"}}.what()) == "w: got x");
  CHECK(std::string(Error{{.field = "f", .expected = "e"}}.what()) == "f: expected e");
  CHECK(std::string(Error{"plain message"}.what()) == "plain message");
  CHECK(std::string(Error{ErrorInfo{}}.what()) == "medseg error");
}

TEST_CASE("require builds the message only when the check fails") {
  int built = 0;
  require(true, [&] {
    ++built;
    return ErrorInfo{};
  });
  CHECK(built == 0);
  CHECK_THROWS_AS(require(false, [&] {
                    ++built;
                    return ErrorInfo{.where = "op", .field = "x", .expected = "1", .actual = str(2)};
                  }),
                  Error);
  CHECK(built == 1);
  CHECK(str("a", 1, '/', 2.5) == "a1/2.5");
}
