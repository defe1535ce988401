// The MPI collectives of lib/runtime (mpi.hpp), at every process count.
#include <mpi.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "eplb/core/error.hpp"
#include "eplb/runtime/mpi.hpp"

namespace {

using eplb::core::Error;
using eplb::core::ErrorKind;
namespace runtime = eplb::runtime;
using namespace std::chrono_literals;

const runtime::Group kWorld{MPI_COMM_WORLD, 60s};

struct World {
  int rank = 0;
  int size = 1;
  World() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
};

// Rank r contributes r lines (none on rank 0), including an empty one and one with a
// newline and a NUL, so framing bugs show.
std::vector<std::string> lines_of(int rank) {
  std::vector<std::string> lines;
  for (int i = 0; i < rank; ++i) {
    if (i == 1) {
      lines.push_back("");
    } else if (i == 2) {
      lines.push_back(std::string("two\nlines and a \0 byte", 22));
    } else {
      lines.push_back("rank " + std::to_string(rank) + " line " + std::to_string(i));
    }
  }
  return lines;
}

}  // namespace

TEST_CASE("runtime: gather_lines collects every rank's lines in rank order on rank 0") {
  World w;
  auto got = runtime::gather_lines(kWorld, lines_of(w.rank), "test");
  if (w.rank != 0) {
    CHECK(got.empty());
    return;
  }
  std::vector<std::string> expected;
  for (int r = 0; r < w.size; ++r) {
    for (auto& line : lines_of(r)) expected.push_back(line);
  }
  CHECK(got == expected);
}

TEST_CASE("runtime: all_true is true only when every rank says so") {
  World w;
  CHECK(runtime::all_true(kWorld, true, "test"));
  CHECK_FALSE(runtime::all_true(kWorld, false, "test"));
  // Only the last rank disagrees: every rank must see false.
  CHECK_FALSE(runtime::all_true(kWorld, w.rank != w.size - 1, "test"));
}

TEST_CASE("runtime: broadcast_string returns the root's value everywhere") {
  World w;
  std::string mine = "from rank " + std::to_string(w.rank) + std::string("\0tail", 5);
  CHECK(runtime::broadcast_string(kWorld, mine, "test") == std::string("from rank 0\0tail", 16));
  int last = w.size - 1;
  CHECK(runtime::broadcast_string(kWorld, mine, "test", last) ==
        "from rank " + std::to_string(last) + std::string("\0tail", 5));
  // An empty value and non-roots passing something else.
  CHECK(runtime::broadcast_string(kWorld, w.rank == 0 ? "" : "ignored", "test").empty());
}

TEST_CASE("runtime: all_max and all_sum reduce element-wise") {
  World w;
  long long r = w.rank, n = w.size;
  std::vector<long long> values{r, -r, r * r, 1LL << 40};
  CHECK(runtime::all_max(kWorld, values, "test") ==
        std::vector<long long>{n - 1, 0, (n - 1) * (n - 1), 1LL << 40});
  CHECK(runtime::all_sum(kWorld, values, "test") ==
        std::vector<long long>{n * (n - 1) / 2, -n * (n - 1) / 2, (n - 1) * n * (2 * n - 1) / 6,
                               n << 40});
  CHECK(runtime::all_sum(kWorld, {}, "test").empty());
}

TEST_CASE("runtime: check_mpi names the call, MPI's error string, file and line") {
  CHECK_NOTHROW(runtime::check_mpi(MPI_SUCCESS, "MPI_Barrier(comm)", "x.cpp", 1));
  try {
    runtime::check_mpi(MPI_ERR_RANK, "MPI_Send(buf, n, MPI_BYTE, 9, 0, comm)",
                       "/src/lib/runtime/src/mpi.cpp", 42);
    FAIL_CHECK("no exception");
  } catch (const Error& e) {
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(MPI_ERR_RANK, text, &length);
    CHECK(e.kind() == ErrorKind::kComm);
    CHECK(std::string(e.what()) == std::string("MPI_Send(...) failed: ") + text + " at mpi.cpp:42");
  }
}

TEST_CASE("runtime: a real MPI failure on an owned communicator becomes an exception") {
  World w;
  runtime::MpiComm comm = runtime::MpiComm::dup(MPI_COMM_WORLD);
  REQUIRE(comm);
  int byte = 0;
  // Rank `size` does not exist: MPI_ERRORS_RETURN on the dup turns this into an Error.
  CHECK_THROWS_MATCHES(EPLB_MPI_CHECK(MPI_Send(&byte, 1, MPI_INT, w.size, 0, comm.get())), Error,
                       Catch::Matchers::Predicate<Error>([](const Error& e) {
                         return e.kind() == ErrorKind::kComm &&
                                std::string(e.what()).starts_with("MPI_Send(...) failed: ");
                       }));
  runtime::MpiComm moved = std::move(comm);
  CHECK_FALSE(comm);
  CHECK(moved);
  moved.close();
  CHECK_FALSE(moved);
}

TEST_CASE("runtime: MpiSession inside an initialized MPI knows rank, node rank and host") {
  World w;
  {
    runtime::MpiSession session(nullptr, nullptr, 7s);  // collective: node communicator
    CHECK(session.timeout() == 7s);
    CHECK(session.group().timeout == 7s);
    CHECK(session.rank() == w.rank);
    CHECK(session.size() == w.size);
    CHECK(session.node_rank() >= 0);
    CHECK(session.node_rank() < session.node_size());
    CHECK(session.node_size() <= w.size);
    CHECK_FALSE(session.host().empty());
    // On one host, node ranks follow world ranks (split key = world rank).
    if (session.node_size() == w.size) CHECK(session.node_rank() == w.rank);
  }
  // The session did not own MPI: it is still usable.
  int finalized = 1;
  MPI_Finalized(&finalized);
  CHECK(finalized == 0);
  CHECK(runtime::all_true(kWorld, true, "test"));
}

TEST_CASE("runtime: barrier and broadcast_bytes") {
  World w;
  runtime::barrier(kWorld, "test");
  std::vector<std::byte> bytes(5, std::byte(w.rank));
  runtime::broadcast_bytes(kWorld, bytes, "test", w.size - 1);
  CHECK(bytes == std::vector<std::byte>(5, std::byte(w.size - 1)));
}

// Last on purpose: the timed-out collective stays pending on its own communicator.
TEST_CASE("runtime: a collective timeout names the phase and the silent rank") {
  World w;
  if (w.size < 2) return;  // needs a peer to miss
  runtime::MpiComm comm = runtime::MpiComm::dup(MPI_COMM_WORLD);
  const runtime::Group group{comm.get(), 1500ms};
  if (w.rank != 1) {  // rank 1 stays away
    const auto start = std::chrono::steady_clock::now();
    try {
      runtime::all_true(group, true, "layer 7: agreement before the exchange");
      FAIL_CHECK("a collective with a silent peer did not time out");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kComm);
      const std::string want =
          w.rank == 0 ? "rank 1 did not reach it" : "rank 0 reached it and names the ranks";
      CHECK_THAT(e.what(), Catch::StartsWith("layer 7: agreement before the exchange: "
                                             "MPI_Allreduce timed out after 1.5 s: ") &&
                               Catch::Contains(want));
      CHECK(std::chrono::steady_clock::now() - start >= 1500ms);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (w.rank == 1) {  // now complete what the others left pending, so nothing hangs later
    int notice = 0, one = 1, out = 0;
    MPI_Recv(&notice, 1, MPI_INT, 0, runtime::kRollCallTag, comm.get(), MPI_STATUS_IGNORE);
    MPI_Request request = MPI_REQUEST_NULL;  // a blocking collective would not match theirs
    MPI_Iallreduce(&one, &out, 1, MPI_INT, MPI_MIN, comm.get(), &request);
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}
