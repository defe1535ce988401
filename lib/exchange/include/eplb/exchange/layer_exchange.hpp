// One layer (or a group of layers) of a plan executed on rows in memory, host or device:
// the only exchange body. The disk-to-disk rebalance, the update in place, the benchmark
// and the in-server library (libeplb) all call it; none of them moves a row itself.
//
// No files, no HDF5, no MPI: rows are addresses, the network is a transport::Transport,
// and local copies go through a Copier (memcpy on the host, batched kernels on a device).
//
// What run() does for this process, per layer of the group, per EP rank it hosts:
//   1. rows a rank fills from its own old rows (kUnchanged with Unchanged::kCopy, kLocal),
//      empty rows (zeros), and messages between two EP ranks of this process: copied;
//   2. every message to or from another process: one transfer per peer process for the
//      whole group, in the wire format of wire_format.hpp;
//   3. rows copied from a received row (kCopy).
// Checksums travel with the bytes when the caller gives them (ExchangeRows::old_sum): each
// new row's expected checksum becomes the recorded checksum of its source slot; checking
// the bytes against it is the caller's (its writer thread, or the library's verify pass).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "eplb/exchange/copier.hpp"
#include "eplb/plan/plan.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::exchange {

// Where the rows of the layers of one run() live in this process's memory.
// NOTE: new rows must not overlap any old row that run() reads (sources of messages,
// kLocal and kUnchanged copies): run() reads old rows and writes new rows concurrently.
struct ExchangeRows {
  // (layer, EP rank, tensor, row) -> address: old rows of the EP ranks this process hosts
  // (read, never written), and their new rows (written). Called only for rows run() uses.
  std::function<std::byte*(int32_t layer_idx, int32_t ep_rank, size_t tensor_idx, int32_t row)>
      old_row;
  std::function<std::byte*(int32_t layer_idx, int32_t ep_rank, size_t tensor_idx, int32_t row)>
      new_row;
  // Optional, both or neither: the recorded checksum of an old row, and the expected
  // checksum of a new row, which run() sets to the one of the slot its bytes come from.
  std::function<uint64_t(int32_t layer_idx, int32_t ep_rank, size_t tensor_idx, int32_t row)>
      old_sum;
  std::function<uint64_t&(int32_t layer_idx, int32_t ep_rank, size_t tensor_idx, int32_t row)>
      new_sum;
};

// What happens to a new row that keeps its old logical expert (RowSource::kUnchanged).
enum class Unchanged {
  kCopy,  // new rows are a separate buffer: the bytes are copied from the old row
  kKeep,  // new rows are the old rows' memory (updates in place): nothing is copied
};

struct ExchangeOptions {
  Unchanged unchanged = Unchanged::kCopy;
  // With checksums (ExchangeRows::old_sum set): the checksum of a zero row per tensor,
  // which empty rows get.
  std::vector<uint64_t> zero_row_sums;
};

// This process's share of one run(), added up over calls by the caller.
struct ExchangeCounts {
  long long bytes_sent = 0;           // over the transport, trailers included
  long long bytes_received = 0;       // over the transport, trailers included
  long long rows_copied_locally = 0;  // kLocal and kCopy rows
  long long rows_rewritten = 0;       // every row that is not kUnchanged
  ExchangeCounts& operator+=(const ExchangeCounts& o);
};

class LayerExchange {
 public:
  // Local. Keeps references to `plan`, `map` and `transport`, which must outlive it.
  // `process` is this process's rank in the transport (the plan's EP ranks are hosted as
  // `map` says); `row_bytes` the bytes of one row of each tensor, in the tensors' order,
  // the same on every process.
  LayerExchange(const plan::Plan& plan, const plan::ProcessMap& map, int32_t process,
                std::vector<size_t> row_bytes, transport::Transport& transport,
                ExchangeOptions options = {});

  // Collective over the transport: every process calls it with the same layers (ascending,
  // distinct), in the same order as every other collective on the transport. Returns when
  // every new row of those layers that this process hosts holds its bytes (the copier's
  // finish() included). Throws core::Error(kComm) as Transport::exchange does (the
  // transport is unusable afterwards), and whatever the copier throws.
  ExchangeCounts run(std::span<const int32_t> layer_idxs, const ExchangeRows& rows, Copier& copier);

  // Local: allocates now (from the transport) the checksum trailers of the plan's busiest
  // layer, so that a run() of one layer with checksums allocates nothing; returns their
  // bytes. Without it, run() allocates what it needs on first use.
  size_t reserve_trailers();

 private:
  void fill_rows(int32_t layer_idx, bool after_receive, const ExchangeRows& rows, Copier& copier,
                 ExchangeCounts& counts) const;

  const plan::Plan& plan_;
  const plan::ProcessMap& map_;
  int32_t process_;
  std::vector<size_t> row_bytes_;
  transport::Transport& transport_;
  ExchangeOptions options_;
  std::vector<int32_t> hosted_;  // EP ranks of this process, ascending
  transport::HostBuffer trailers_;
};

}  // namespace eplb::exchange
