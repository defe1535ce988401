// The message wire format, in one pure function (no MPI, no I/O): which bytes each
// transfer between two processes carries, in which order, and where each message's
// checksum trailer sits. LayerExchange (layer_exchange.hpp), the only exchange body,
// builds every transfer with it, so sender and receiver cannot disagree.
//
// NOTE: the byte layout every process relies on: for each entry of a plan::Message (in its
// ascending logical expert order), each tensor's row in the checkpoint's tensor order;
// then, with trailers, the source slot's recorded xxh3 for each (entry, tensor), entry
// major, so the receiver can check what it got against the checksum of the slot it came
// from. All messages from the EP ranks of one process to those of another travel as one
// transfer, in plan order (by source, then destination EP rank); messages between two EP
// ranks of the same process are not on the wire (the caller copies them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "eplb/plan/plan.hpp"
#include "eplb/transport/transport.hpp"

namespace eplb::exchange {

// The address of (EP rank, tensor, row) in this process's memory.
using RowAddress = std::function<std::byte*(int32_t ep_rank, size_t tensor_idx, int32_t row)>;

struct WireInput {
  const plan::LayerPlan* layer = nullptr;
  const plan::ProcessMap* map = nullptr;
  int32_t process = 0;            // the calling process
  std::vector<size_t> row_bytes;  // per tensor, in the checkpoint's tensor order
  RowAddress source_row;          // old rows of the EP ranks this process hosts
  RowAddress dest_row;            // new rows of the EP ranks this process hosts
  // Room for trailer_words() checksums; nullptr: messages carry no trailer.
  uint64_t* trailers = nullptr;
};

// One message's trailer: its checksums are trailers[offset, offset + entries * tensors).
struct TrailerSlot {
  const plan::Message* message = nullptr;
  size_t offset = 0;  // in uint64 words from WireInput::trailers
};

struct WireLayout {
  std::vector<transport::Transfer> sends;  // one per peer process with bytes, ascending peer
  std::vector<transport::Transfer> recvs;
  std::vector<TrailerSlot> sent_trailers;      // the caller fills these before the exchange
  std::vector<TrailerSlot> received_trailers;  // the sources' checksums after it
  std::vector<const plan::Message*> local;     // both ends in this process, plan order
};

// Local and pure: the transfers of one layer for `in.process`. Every process computes its
// side from the same plan and map, so a's send to b and b's receive from a list the same
// bytes in the same order.
WireLayout wire_layout(const WireInput& in);

// Local and pure: the largest number of peer processes any process sends to, or receives
// from, over `layer_idxs` of `plan` (the greater of the two): what Transport::exchange takes
// as max_peers, the same on every process.
int max_peer_processes(const plan::Plan& plan, std::span<const int32_t> layer_idxs,
                       const plan::ProcessMap& map);

// Local and pure: uint64 words of trailer room `process` needs for `layer`.
size_t trailer_words(const plan::LayerPlan& layer, const plan::ProcessMap& map, int32_t process,
                     size_t num_tensors);

}  // namespace eplb::exchange
