// One interface for moving byte streams between processes; MPI and NCCL backends.
//
// A Transfer is one message: the concatenation of its segments. For every ordered pair of
// processes (a, b) there is at most one Transfer a -> b per exchange() call, and a's send
// and b's receive list the same total number of bytes (their segments may be cut
// differently: each side describes its own memory).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eplb/core/unique_handle.hpp"
#include "eplb/runtime/deadline.hpp"

namespace eplb::transport {

struct Segment {
  std::byte* data = nullptr;  // host memory from allocate_host(), or device memory (NCCL)
  size_t bytes = 0;
};

struct Transfer {
  int peer = -1;  // process rank in the transport's communicator; never the caller itself
  std::vector<Segment> segments;
  size_t bytes() const;
};

// Host memory a transport can move efficiently (pinned for NCCL). Move-only owner.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(std::byte* data, size_t bytes, void (*release)(std::byte*)) noexcept
      : memory_({data, bytes, release}) {}
  std::byte* data() const { return memory_.get().data; }
  size_t size() const { return memory_.get().bytes; }
  std::span<std::byte> span() const { return {data(), size()}; }

 private:
  struct Memory {
    std::byte* data = nullptr;
    size_t bytes = 0;
    void (*release)(std::byte*) = nullptr;
    bool operator==(const Memory&) const = default;
  };
  struct Traits {
    static Memory null() noexcept { return {}; }
    static void close(Memory memory) noexcept {
      if (memory.data != nullptr && memory.release != nullptr) memory.release(memory.data);
    }
  };
  core::UniqueHandle<Memory, Traits> memory_;
};

struct TransportOptions {
  // The command's --timeout: an exchange() that has not completed after this long throws
  // core::Error(kComm) (NCCL: the communicator is aborted first), and so do the
  // transport's own set-up and agreements. Zero = wait forever.
  std::chrono::milliseconds timeout = runtime::kDefaultTimeout;
  // MPI: messages larger than this are split (MPI counts are int).
  size_t max_message_bytes = size_t{1} << 30;
  // NCCL: bytes of device memory for its send + receive staging (the CLI gives it half of
  // --max-staging-bytes; MPI ignores it).
  size_t device_staging_bytes = size_t{2} << 30;
  // NCCL: rank 0 prints when each round's gather, send/receive and scatter ran (stderr).
  bool trace_rounds = false;
};

// How long a transport took to set up, and how much of that its caller waited for. NCCL
// finishes its set-up (CUDA context, device staging, communicator) in the background and
// waits for it only where it first needs it: its first exchange() (or close()).
struct SetupTimes {
  // Wall time from the start of the constructor until the transport was ready to move
  // data; 0 until then.
  double seconds = 0;
  // Of which the caller's thread was held: in the constructor, and at first use (waiting
  // for the set-up of this process and its peers, then finishing it).
  double seconds_blocked = 0;
  // allocate_host() so far, on the caller's thread; not in `seconds` (NCCL page-locks
  // during the set-up in the background, afterwards in allocate_host()).
  double seconds_host_alloc = 0;
  // What the set-up consisted of, one line (NCCL: each step's time), for -v.
  std::string steps;
  // What ran while the caller did other work (read the first layers).
  double seconds_hidden() const {
    return seconds > seconds_blocked ? seconds - seconds_blocked : 0;
  }
};

// The agreements a transport needs besides its byte streams (the NCCL backend's set-up and
// piece size), over the same processes. An NCCL transport made from an MPI communicator
// agrees over MPI, which names silent ranks; one made from a unique id or from the caller's
// NCCL communicator agrees over NCCL itself (no MPI in the process at all).
class Control {
 public:
  Control() = default;
  virtual ~Control() = default;
  Control(const Control&) = delete;
  Control& operator=(const Control&) = delete;
  // Collective: the element-wise maximum of `values` (same length everywhere) over every
  // process. Throws core::Error(kComm) naming `phase` on failure or timeout.
  virtual std::vector<long long> all_max(const std::vector<long long>& values,
                                         std::string_view phase) = 0;
  // Collective on the success path: releases what it holds (a duplicated communicator).
  virtual void close() = 0;
};

class Transport {
 public:
  Transport() = default;
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  virtual std::string_view name() const = 0;  // "mpi" or "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Collective over the transport's communicator: every process calls it the same number
  // of times (with empty lists if it has nothing to move). Returns when every receive
  // segment holds its bytes and every send segment may be reused. Throws core::Error(kComm)
  // naming the peer and the call on failure or timeout; after that the transport is unusable.
  // `max_peers`: the largest number of peer processes any process sends to or receives from
  // in this call (max of the two), when every process knows it (a plan tells them all);
  // -1: the transport agrees on it itself where it needs it (NCCL cuts each pair's stream
  // by it, the same way on both ends).
  virtual void exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs,
                        int max_peers) = 0;
  void exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs) {
    exchange(sends, recvs, -1);
  }

  // Local: host memory suited to this transport's segments.
  virtual HostBuffer allocate_host(size_t bytes) = 0;

  // Collective, as exchange() (in the same order with it): the element-wise maximum of
  // `values` (same length on every process). For the agreements of callers that hold no
  // other channel (the in-server library). Throws core::Error(kComm) naming `phase`.
  virtual std::vector<long long> all_max(const std::vector<long long>& values,
                                         std::string_view phase) = 0;

  // Collective: orderly teardown on the success path (NCCL: ncclCommDestroy).
  virtual void close() = 0;

  // Local: the set-up's times so far (see SetupTimes); zeros for a transport that has
  // nothing to set up (MPI).
  virtual SetupTimes setup_times() const { return {}; }
};

}  // namespace eplb::transport
