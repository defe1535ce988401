// The wire format (exchange/wire_format.hpp) on its own: ordering, trailers, several EP ranks
// per process, empty peers.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "eplb/exchange/wire_format.hpp"

namespace {

using eplb::exchange::WireInput;
using eplb::exchange::WireLayout;
using eplb::plan::LayerPlan;
using eplb::plan::Message;
using eplb::plan::ProcessMap;
using eplb::transport::Segment;

// Rows are never touched: an address only has to say which (EP rank, tensor, row) it is.
std::byte arena[1 << 16];
std::byte* old_row(int32_t ep, size_t t, int32_t row) {
  return arena + 10000 + ep * 1000 + static_cast<int32_t>(t) * 100 + row;
}
std::byte* new_row(int32_t ep, size_t t, int32_t row) {
  return arena + 40000 + ep * 1000 + static_cast<int32_t>(t) * 100 + row;
}

Message msg(int32_t src, int32_t dst, std::vector<int32_t> experts, std::vector<int32_t> src_rows,
            std::vector<int32_t> dst_rows) {
  return Message{src, dst, std::move(experts), std::move(src_rows), std::move(dst_rows)};
}

const std::vector<size_t> kRowBytes{64, 8};  // two tensors

WireLayout layout(const LayerPlan& layer, const ProcessMap& map, int32_t process,
                  uint64_t* trailers) {
  return eplb::exchange::wire_layout(
      WireInput{&layer, &map, process, kRowBytes, old_row, new_row, trailers});
}

bool same(const Segment& s, std::byte* data, size_t bytes) {
  return s.data == data && s.bytes == bytes;
}

}  // namespace

TEST_CASE("wire format: rows entry by entry, tensors in order, then the trailer") {
  // One EP rank per process. Plan order: (0,1), (0,2), (1,0), (2,0).
  LayerPlan layer;
  layer.messages = {msg(0, 1, {3, 5}, {1, 0}, {2, 4}), msg(0, 2, {7}, {2}, {0}),
                    msg(1, 0, {2}, {3}, {1}), msg(2, 0, {4, 6}, {0, 1}, {0, 3})};
  const ProcessMap map{3, 3};
  std::vector<uint64_t> trailers(64);
  const WireLayout w = layout(layer, map, 0, trailers.data());
  REQUIRE(w.sends.size() == 2);
  CHECK(w.sends[0].peer == 1);
  CHECK(w.sends[1].peer == 2);
  const auto& s = w.sends[0].segments;
  REQUIRE(s.size() == 5);
  CHECK(same(s[0], old_row(0, 0, 1), 64));
  CHECK(same(s[1], old_row(0, 1, 1), 8));
  CHECK(same(s[2], old_row(0, 0, 0), 64));
  CHECK(same(s[3], old_row(0, 1, 0), 8));
  CHECK(same(s[4], reinterpret_cast<std::byte*>(trailers.data()), 2 * 2 * sizeof(uint64_t)));
  REQUIRE(w.recvs.size() == 2);
  CHECK(w.recvs[0].peer == 1);
  CHECK(w.recvs[1].peer == 2);
  const auto& r = w.recvs[1].segments;  // from process 2: experts 4, 6 into rows 0, 3
  REQUIRE(r.size() == 5);
  CHECK(same(r[0], new_row(0, 0, 0), 64));
  CHECK(same(r[2], new_row(0, 0, 3), 64));
  CHECK(w.local.empty());
}

TEST_CASE("wire format: trailer slots follow plan order over sends and receives") {
  LayerPlan layer;
  layer.messages = {msg(0, 1, {3, 5}, {1, 0}, {2, 4}), msg(0, 2, {7}, {2}, {0}),
                    msg(1, 0, {2}, {3}, {1}), msg(2, 0, {4, 6}, {0, 1}, {0, 3})};
  const ProcessMap map{3, 3};
  std::vector<uint64_t> trailers(64);
  const WireLayout w = layout(layer, map, 0, trailers.data());
  REQUIRE(w.sent_trailers.size() == 2);
  REQUIRE(w.received_trailers.size() == 2);
  CHECK(w.sent_trailers[0].message == &layer.messages[0]);
  CHECK(w.sent_trailers[0].offset == 0);
  CHECK(w.sent_trailers[1].offset == 4);  // after 2 entries x 2 tensors
  CHECK(w.received_trailers[0].message == &layer.messages[2]);
  CHECK(w.received_trailers[0].offset == 6);
  CHECK(w.received_trailers[1].offset == 8);
  CHECK(eplb::exchange::trailer_words(layer, map, 0, kRowBytes.size()) == 12);
  // The receive's trailer segment is where its slot says.
  CHECK(same(w.recvs[0].segments.back(), reinterpret_cast<std::byte*>(trailers.data() + 6),
             2 * sizeof(uint64_t)));

  // Without trailers: rows only, no slots.
  const WireLayout bare = layout(layer, map, 0, nullptr);
  CHECK(bare.sent_trailers.empty());
  CHECK(bare.received_trailers.empty());
  CHECK(bare.sends[0].segments.size() == 4);
  CHECK(bare.sends[0].bytes() == 2 * (64 + 8));
}

TEST_CASE("wire format: several EP ranks per process travel as one transfer in plan order") {
  // EP ranks 0, 1 on process 0; 2, 3 on process 1.
  LayerPlan layer;
  layer.messages = {msg(0, 1, {9}, {0}, {1}), msg(0, 2, {1}, {2}, {0}), msg(1, 2, {4}, {1}, {3}),
                    msg(1, 3, {5, 8}, {0, 2}, {1, 2}), msg(2, 0, {6}, {1}, {0})};
  const ProcessMap map{4, 2};
  std::vector<uint64_t> trailers(64);
  const WireLayout p0 = layout(layer, map, 0, trailers.data());
  REQUIRE(p0.local.size() == 1);
  CHECK(p0.local[0] == &layer.messages[0]);
  REQUIRE(p0.sends.size() == 1);
  CHECK(p0.sends[0].peer == 1);
  const auto& s = p0.sends[0].segments;
  // (0,2): 2 rows + trailer; (1,2): 2 + trailer; (1,3): 4 + trailer.
  REQUIRE(s.size() == 11);
  CHECK(same(s[0], old_row(0, 0, 2), 64));
  CHECK(same(s[3], old_row(1, 0, 1), 64));
  CHECK(same(s[6], old_row(1, 0, 0), 64));
  CHECK(same(s[8], old_row(1, 0, 2), 64));

  std::vector<uint64_t> other(64);
  const WireLayout p1 = layout(layer, map, 1, other.data());
  REQUIRE(p1.recvs.size() == 1);
  const auto& r = p1.recvs[0].segments;
  REQUIRE(r.size() == 11);
  CHECK(same(r[0], new_row(2, 0, 0), 64));
  CHECK(same(r[3], new_row(2, 0, 3), 64));
  CHECK(same(r[6], new_row(3, 0, 1), 64));
  // Both ends list the same bytes, trailers included.
  CHECK(p0.sends[0].bytes() == p1.recvs[0].bytes());
  CHECK(p0.recvs[0].bytes() == p1.sends[0].bytes());
}

TEST_CASE("wire format: a process or peer without messages gets no transfer") {
  LayerPlan layer;
  layer.messages = {msg(0, 2, {1}, {0}, {0})};
  const ProcessMap map{4, 4};
  uint64_t trailers[8] = {};
  const WireLayout idle = layout(layer, map, 1, trailers);
  CHECK(idle.sends.empty());
  CHECK(idle.recvs.empty());
  CHECK(idle.local.empty());
  CHECK(eplb::exchange::trailer_words(layer, map, 1, 2) == 0);
  const WireLayout sender = layout(layer, map, 0, trailers);
  REQUIRE(sender.sends.size() == 1);  // no entry for peers 1 and 3
  CHECK(sender.sends[0].peer == 2);
  CHECK(sender.recvs.empty());
  const WireLayout none = layout(LayerPlan{}, map, 0, trailers);
  CHECK(none.sends.empty());
  CHECK(none.recvs.empty());
}
