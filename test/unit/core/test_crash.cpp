// core/crash.hpp: a crash inside a named step is said in one line naming the step, and the
// process still dies by the signal. Each case runs in a forked child.
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <string>

#include "eplb/core/crash.hpp"

namespace {
namespace crash = eplb::core::crash;

struct Child {
  int status = 0;
  std::string err;
};

Child run_child(const std::function<void()>& body) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    body();
    std::_Exit(0);
  }
  close(fds[1]);
  Child child;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) child.err.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  waitpid(pid, &child.status, 0);
  return child;
}
}  // namespace

TEST_CASE("crash: a signal inside a step names the step, then the process dies by it") {
  const Child child = run_child([] {
    crash::install();
    const crash::Step outer("reading the manifest");
    const crash::Step inner("opening 'x/rank-00003.h5'");
    std::raise(SIGSEGV);
  });
  // The previous handler decides how the process ends: the default dies by the signal;
  // AddressSanitizer's (in the sanitizer build) reports and exits 1.
  if (WIFSIGNALED(child.status)) {
    CHECK(WTERMSIG(child.status) == SIGSEGV);
  } else {
    CHECK(WEXITSTATUS(child.status) != 0);
  }
  CHECK(child.err.find("crashed (SIGSEGV) while opening 'x/rank-00003.h5': most likely a "
                       "damaged file") != std::string::npos);
  CHECK(child.err.find("reading the manifest") == std::string::npos);  // the innermost only
}

TEST_CASE("crash: outside any step nothing is added, and a step ended is not named") {
  const Child child = run_child([] {
    crash::install();
    { const crash::Step done("opening 'y.h5'"); }
    std::raise(SIGBUS);
  });
  if (WIFSIGNALED(child.status)) {
    CHECK(WTERMSIG(child.status) == SIGBUS);
  } else {
    CHECK(WEXITSTATUS(child.status) != 0);
  }
  CHECK(child.err.find("crashed") == std::string::npos);
}
