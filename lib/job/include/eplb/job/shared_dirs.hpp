// Before any data moves: do all hosts see the same directories? Rank 0 alone creates the
// output's staging directory and publishes it, and each rank reads its own input shard, so
// a directory private to each host (a local /tmp, a node-local scratch disk) would fail
// late, with a raw HDF5 error, or publish a checkpoint missing the other hosts' shards.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/fs/free_space.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::job {

struct SharedDirectory {
  std::filesystem::path path;
  std::string role;  // how messages name it: "input directory", "output's parent directory"
  // The input may sit on a read-only file system: rank 0 not being allowed to create the
  // check file there skips that directory's check (said with -v) instead of failing.
  bool may_be_read_only = false;
};

// Local: the directory an output checkpoint is created in (where staging and the final
// name live), for check_shared_directories.
SharedDirectory output_parent(const std::filesystem::path& output);

// Collective over session.group(): every process passes the same list. Free (no file, no
// communication) when every process runs on one node (session.num_nodes() == 1).
// Otherwise rank 0 creates a check file of random content in each directory
// (".eplb-shared-check.<random>", O_CREAT|O_EXCL|O_NOFOLLOW, so nothing existing is
// touched), every process reads it back, and rank 0 removes it once all have (also when
// any step fails). A process that cannot see it says which directory is not shared with
// rank 0's host (its own rank and host in the log prefix), and every process throws
// core::Error(kIo) (exit 3) after the agreement. A directory that does not exist is left
// to the loaders and the output's checks, which say so more precisely.
void check_shared_directories(const runtime::MpiSession& session,
                              const std::vector<SharedDirectory>& dirs);

// Rank 0's host and this process's, as the messages of check_directories_seen name them.
struct HostNames {
  std::string rank0;
  std::string mine;
};

// Collective over `group`: the check of check_shared_directories, whatever the number of
// nodes (check_shared_directories skips it on one). `dirs` as this process names them:
// every process passes the same list in a job; a test passes another directory on some
// ranks to play a host that has its own.
void check_directories_seen(const runtime::Group& group, const std::vector<SharedDirectory>& dirs,
                            const HostNames& hosts);

// Collective over `group`, before a job writes under `dir`: rank 0 checks that `needed`
// (bytes and files) fits in the free space of its filesystem (fs::require_free_space,
// naming `what` and `remedy`), and every process throws core::Error(kIo) (exit 3) when it
// does not.
void check_free_space(const runtime::Group& group, const std::filesystem::path& dir,
                      fs::SpaceNeeded needed, std::string_view what,
                      std::string_view remedy = "make room or choose another directory");

}  // namespace eplb::job
