// MPI backend: non-blocking point-to-point straight from the caller's segments.
//
// Each Transfer's byte stream is cut into chunks of at most max_message_bytes; every chunk
// is one message whose datatype (hindexed over absolute addresses) lists the pieces of the
// segments it covers on *this* side, so no packing copy is made and the two sides may cut
// their segments differently.
#include "eplb/transport/mpi_transport.hpp"

#include <fmt/format.h>

#include <sys/mman.h>

#include <cstdlib>
#include <limits>
#include <map>
#include <optional>

#include "detail.hpp"
#include "eplb/core/error.hpp"
#include "eplb/runtime/deadline.hpp"
#include "eplb/runtime/mpi.hpp"

namespace eplb::transport {
namespace {

using core::Error;
using core::ErrorKind;

// Owner of a committed derived datatype. Freeing it while a message using it is pending is
// allowed: MPI keeps it alive until that message completes.
class MpiDatatype {
 public:
  MpiDatatype(const std::vector<int>& lengths, const std::vector<MPI_Aint>& addresses) {
    EPLB_MPI_CHECK(MPI_Type_create_hindexed(static_cast<int>(lengths.size()), lengths.data(),
                                            addresses.data(), MPI_BYTE, &type_));
    if (int rc = MPI_Type_commit(&type_); rc != MPI_SUCCESS) {
      MPI_Type_free(&type_);
      runtime::check_mpi(rc, "MPI_Type_commit()", __FILE__, __LINE__);
    }
  }
  ~MpiDatatype() {
    if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
  }
  MpiDatatype(const MpiDatatype&) = delete;
  MpiDatatype& operator=(const MpiDatatype&) = delete;
  MpiDatatype(MpiDatatype&&) = delete;
  MpiDatatype& operator=(MpiDatatype&&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

struct MessageInfo {
  int peer = -1;
  bool is_send = false;
  size_t bytes = 0;
  bool done = false;
};

// The messages of one exchange. NOTE: a RequestSet destroyed with messages still pending
// (timeout, error) cancels and releases them rather than waiting: the peer may never come.
// A cancelled receive never writes; a send that cannot be cancelled may still read its
// segments later, which is why the transport is unusable (and the job ends) after a failure.
class RequestSet {
 public:
  RequestSet() = default;
  RequestSet(const RequestSet&) = delete;
  RequestSet& operator=(const RequestSet&) = delete;
  RequestSet(RequestSet&&) = delete;
  RequestSet& operator=(RequestSet&&) = delete;
  ~RequestSet() {
    for (auto& req : requests_) {
      if (req == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&req);
      MPI_Request_free(&req);
    }
  }
  void add(MPI_Request req, MessageInfo info) {
    requests_.push_back(req);
    info_.push_back(info);
  }
  std::vector<MPI_Request>& requests() { return requests_; }
  std::vector<MessageInfo>& info() { return info_; }

 private:
  std::vector<MPI_Request> requests_;
  std::vector<MessageInfo> info_;
};

class MpiTransport final : public Transport {
 public:
  MpiTransport(MPI_Comm comm, const TransportOptions& options)
      : comm_(runtime::MpiComm::dup(comm)), options_(options) {
    if (options_.max_message_bytes == 0 ||
        options_.max_message_bytes > static_cast<size_t>(std::numeric_limits<int>::max())) {
      throw Error(ErrorKind::kUsage,
                  fmt::format("MPI transport: max message size {} is not in [1, {}] bytes",
                              options_.max_message_bytes, std::numeric_limits<int>::max()));
    }
    EPLB_MPI_CHECK(MPI_Comm_rank(comm_.get(), &rank_));
    EPLB_MPI_CHECK(MPI_Comm_size(comm_.get(), &size_));
    void* tag_ub = nullptr;
    int found = 0;
    EPLB_MPI_CHECK(MPI_Comm_get_attr(comm_.get(), MPI_TAG_UB, &tag_ub, &found));
    if (found) tag_ub_ = *static_cast<int*>(tag_ub);
  }

  std::string_view name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  using Transport::exchange;
  void exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs,
                int max_peers) override;
  HostBuffer allocate_host(size_t bytes) override;
  std::vector<long long> all_max(const std::vector<long long>& values,
                                 std::string_view phase) override {
    return runtime::all_max(runtime::Group{comm_.get(), options_.timeout}, values, phase);
  }
  void close() override { comm_.close(); }

 private:
  void post(std::span<const Transfer> transfers, bool is_send, RequestSet& requests);
  void post_chunk(detail::SegmentCursor& cursor, size_t bytes, int peer, int tag, bool is_send,
                  RequestSet& requests);
  void wait_all(RequestSet& requests, const runtime::Deadline& deadline);
  [[noreturn]] void throw_timeout(RequestSet& requests, const runtime::Deadline& deadline);
  [[noreturn]] void throw_failed(int rc, const MessageInfo& info);

  runtime::MpiComm comm_;
  TransportOptions options_;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;  // the least MPI guarantees
  bool failed_ = false;
  // Scratch for one chunk's datatype, kept to avoid reallocating per chunk.
  std::vector<std::byte*> piece_data_;
  std::vector<int> piece_bytes_;
  std::vector<MPI_Aint> piece_addresses_;
};

void MpiTransport::exchange(std::span<const Transfer> sends, std::span<const Transfer> recvs,
                            int /*max_peers: MPI matches by peer and tag*/) {
  if (!comm_) throw Error(ErrorKind::kInternal, "internal error: MPI exchange after close()");
  if (failed_) {
    throw Error(ErrorKind::kComm, "MPI transport is unusable after an earlier failed exchange");
  }
  detail::validate_transfers(sends, recvs, rank_, size_, "MPI");
  const runtime::Deadline deadline(options_.timeout);
  failed_ = true;  // until proven otherwise: any throw below leaves messages in flight
  RequestSet requests;
  // Receives first, so that most sends find their receive already posted.
  post(recvs, /*is_send=*/false, requests);
  post(sends, /*is_send=*/true, requests);
  wait_all(requests, deadline);
  failed_ = false;
}

void MpiTransport::post(std::span<const Transfer> transfers, bool is_send, RequestSet& requests) {
  const size_t max_bytes = options_.max_message_bytes;
  for (const auto& transfer : transfers) {
    const size_t total = transfer.bytes();
    detail::SegmentCursor cursor(transfer.segments);
    // NOTE: both sides list the same total bytes for a pair, so they cut the same chunks;
    // MPI's non-overtaking order matches chunks even where tags wrap around.
    size_t chunk_idx = 0;
    for (size_t offset = 0; offset < total; offset += max_bytes, ++chunk_idx) {
      size_t bytes = std::min(max_bytes, total - offset);
      int tag = static_cast<int>(chunk_idx % (static_cast<size_t>(tag_ub_) + 1));
      post_chunk(cursor, bytes, transfer.peer, tag, is_send, requests);
    }
  }
}

void MpiTransport::post_chunk(detail::SegmentCursor& cursor, size_t bytes, int peer, int tag,
                              bool is_send, RequestSet& requests) {
  piece_data_.clear();
  piece_bytes_.clear();
  cursor.take(bytes, [&](std::byte* data, size_t n) {
    piece_data_.push_back(data);
    piece_bytes_.push_back(static_cast<int>(n));  // n <= max_message_bytes <= INT_MAX
  });
  void* buffer = piece_data_.front();
  int count = piece_bytes_.front();
  MPI_Datatype type = MPI_BYTE;
  std::optional<MpiDatatype> derived;
  if (piece_data_.size() > 1) {
    piece_addresses_.resize(piece_data_.size());
    for (size_t i = 0; i < piece_data_.size(); ++i) {
      EPLB_MPI_CHECK(MPI_Get_address(piece_data_[i], &piece_addresses_[i]));
    }
    derived.emplace(piece_bytes_, piece_addresses_);
    buffer = MPI_BOTTOM;
    count = 1;
    type = derived->get();
  }
  MPI_Request req = MPI_REQUEST_NULL;
  if (is_send) {
    EPLB_MPI_CHECK(MPI_Isend(buffer, count, type, peer, tag, comm_.get(), &req));
  } else {
    EPLB_MPI_CHECK(MPI_Irecv(buffer, count, type, peer, tag, comm_.get(), &req));
  }
  requests.add(req, MessageInfo{peer, is_send, bytes});
}

void MpiTransport::wait_all(RequestSet& requests, const runtime::Deadline& deadline) {
  auto& reqs = requests.requests();
  auto& info = requests.info();
  const int num_requests = static_cast<int>(reqs.size());
  std::vector<int> indices(reqs.size());
  std::vector<MPI_Status> statuses(reqs.size());
  const bool done = runtime::poll_until(
      [&] {
        int num_done = 0;
        int rc =
            MPI_Testsome(num_requests, reqs.data(), &num_done, indices.data(), statuses.data());
        if (rc != MPI_SUCCESS) {
          for (size_t i = 0; rc == MPI_ERR_IN_STATUS && i < static_cast<size_t>(num_done); ++i) {
            if (statuses[i].MPI_ERROR != MPI_SUCCESS) {
              throw_failed(statuses[i].MPI_ERROR, info[static_cast<size_t>(indices[i])]);
            }
          }
          runtime::check_mpi(rc, "MPI_Testsome()", __FILE__, __LINE__);
        }
        // MPI_UNDEFINED: every request is complete (or was empty).
        if (num_done == MPI_UNDEFINED) return runtime::Poll::kDone;
        for (size_t i = 0; i < static_cast<size_t>(num_done); ++i) {
          info[static_cast<size_t>(indices[i])].done = true;
        }
        return num_done > 0 ? runtime::Poll::kProgress : runtime::Poll::kIdle;
      },
      deadline);
  if (!done) throw_timeout(requests, deadline);
}

void MpiTransport::throw_failed(int rc, const MessageInfo& info) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw Error(ErrorKind::kComm, fmt::format("MPI exchange failed: {} of {} bytes {} rank {}: {}",
                                            info.is_send ? "send" : "receive", info.bytes,
                                            info.is_send ? "to" : "from", info.peer, text));
}

void MpiTransport::throw_timeout(RequestSet& requests, const runtime::Deadline& deadline) {
  struct Pending {
    size_t recv_bytes = 0;
    size_t send_bytes = 0;
  };
  std::map<int, Pending> pending;  // ordered by rank, for a stable message
  for (const auto& info : requests.info()) {
    if (info.done) continue;
    (info.is_send ? pending[info.peer].send_bytes : pending[info.peer].recv_bytes) += info.bytes;
  }
  std::string peers;
  for (const auto& [peer, p] : pending) {
    std::string what;
    if (p.recv_bytes > 0) what = fmt::format("receiving {} bytes", p.recv_bytes);
    if (p.send_bytes > 0) {
      what += fmt::format("{}sending {} bytes", what.empty() ? "" : ", ", p.send_bytes);
    }
    peers += fmt::format("{}{} ({})", peers.empty() ? "" : ", ", peer, what);
  }
  throw Error(ErrorKind::kComm,
              fmt::format("MPI exchange timed out after {} waiting for {} {}",
                          deadline.timeout_text(), pending.size() == 1 ? "rank" : "ranks", peers));
}

HostBuffer MpiTransport::allocate_host(size_t bytes) {
  if (bytes == 0) return {};
  // Page-aligned: friendly to the kernel's single-copy paths and to O_DIRECT readers.
  // Large buffers also in transparent huge pages where the kernel allows them (the
  // "madvise" mode is common): layer buffers are hundreds of MiB, and on a VM faulting
  // them in 4 KiB at a time costs more CPU than the copies into them (docs/PERFORMANCE.md).
  constexpr size_t kPage = 4096, kHugePage = size_t{2} << 20;
  const size_t align = bytes >= kHugePage ? kHugePage : kPage;
  size_t rounded = (bytes + align - 1) / align * align;
  auto* data = static_cast<std::byte*>(std::aligned_alloc(align, rounded));
  if (data == nullptr) {
    throw Error(
        ErrorKind::kComm,
        fmt::format("cannot allocate {} bytes of host memory for the MPI transport", bytes));
  }
  if (align == kHugePage) ::madvise(data, rounded, MADV_HUGEPAGE);  // a hint: failure is fine
  return HostBuffer(data, bytes, [](std::byte* p) { std::free(p); });
}

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm, const TransportOptions& options) {
  return std::make_unique<MpiTransport>(comm, options);
}

}  // namespace eplb::transport
