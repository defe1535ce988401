#!/usr/bin/env python3
"""eplb_rebalance on CUDA tensors, one process per GPU under torchrun (any count, 1 included):

  torchrun --nproc_per_node=N test/gpu/inserver_gpu.py

- a torch.distributed ProcessGroup as ep_group (the unique id broadcast over it);
- an object with vLLM's PyNcclCommunicator `comm` (an ncclComm_t made here with libnccl);
- the caller's stream: weights written on a side stream and handed over without a sync;
- the asynchronous API with a matmul running on another stream meanwhile;
- a silent peer (N >= 2): the others get EplbError(EPLB_ERR_TIMEOUT) within the deadline,
  naming it.
Results are compared byte for byte with test/python/test_inserver.py's vLLM oracle.
"""

import ctypes
import os
import sys
import time

import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
os.environ.setdefault("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", "0"))
os.environ.setdefault("OMPI_COMM_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
import eplb_rebalance as eplb  # noqa: E402
import test_inserver as base  # noqa: E402  (the oracle and the weight patterns)

RANK = int(os.environ["RANK"])
SIZE = int(os.environ["WORLD_SIZE"])
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("[rank %d] FAILED: %s" % (RANK, what), flush=True)


def say(text):
    if RANK == 0:
        print(text, flush=True)


SHAPES = [(torch.bfloat16, (64, 32)), (torch.uint8, (4096,)), (torch.float32, (7, 3))]


def on_gpu(layers, stream=None):
    with torch.cuda.stream(stream or torch.cuda.current_stream()):
        return [[t.cuda(non_blocking=False) for t in layer] for layer in layers]


def compare(name, mine, old, new, rows, seed):
    state = base.global_state(old, rows, SHAPES, seed, SIZE, seed * 31 + 5)
    ok = True
    for l in range(len(old)):
        want = base.vllm_oracle(old[l], new[l], rows, state[l])
        for k, t in enumerate(mine[l]):
            got = t.cpu().view(torch.uint8).reshape(rows, -1)
            for i in range(rows):
                if not torch.equal(got[i], torch.from_numpy(want[RANK][k][i])):
                    ok = False
    check(ok, name)
    say("case %-50s %s" % (name, "ok" if ok else "FAILED"))


def maps(seed, rows, layers=3):
    import random
    return base.random_maps(random.Random(seed), layers, SIZE, rows, max(1, SIZE * rows - 1))


class PyNcclLike:
    """What vLLM's PyNcclCommunicator offers us: an ncclComm_t in `comm`."""

    def __init__(self, group):
        nccl = ctypes.CDLL("libnccl.so.2")
        uid = ctypes.create_string_buffer(128)
        if RANK == 0:
            assert nccl.ncclGetUniqueId(uid) == 0
        box = [bytes(uid.raw)]
        dist.broadcast_object_list(box, src=0, group=group)
        uid = ctypes.create_string_buffer(box[0], 128)
        self.comm = ctypes.c_void_p()
        rc = nccl.ncclCommInitRank(ctypes.byref(self.comm), SIZE,
                                   (ctypes.c_byte * 128).from_buffer_copy(uid.raw), RANK)
        assert rc == 0, "ncclCommInitRank: %d" % rc


def main():
    torch.cuda.set_device(RANK % torch.cuda.device_count())
    dist.init_process_group("nccl")
    group = dist.group.WORLD
    rows = 4

    # 1. A ProcessGroup: blocking, through the unique id.
    old, new = maps(1, rows)
    w = on_gpu(base.make_weights(old, rows, SHAPES, 1, RANK, 1 * 31 + 5))
    report = eplb.rearrange_expert_weights_inplace(torch.tensor(old), torch.tensor(new), w, group,
                                                   allow_dropping_experts=True)
    torch.cuda.synchronize()
    compare("ProcessGroup, blocking (sent %d B)" % report["bytes_sent"], w, old, new, rows, 1)

    # 1b. Empty slots: their zeros are checked against the host's checksum of zeros, so the
    # GPU's row checksum must equal the host's bit for bit.
    old = [list(range(rows * SIZE))]
    new = [[-1] + list(range(1, rows * SIZE - 1)) + [-1]]
    w = on_gpu(base.make_weights(old, rows, SHAPES, 6, RANK, 6 * 31 + 5))
    eplb.rearrange_expert_weights_inplace(old, new, w, group, allow_dropping_experts=True)
    torch.cuda.synchronize()
    compare("empty slots (GPU and host checksums agree)", w, old, new, rows, 6)

    # 2. vLLM's PyNcclCommunicator: the caller's ncclComm_t, no second communicator.
    old, new = maps(2, rows)
    w = on_gpu(base.make_weights(old, rows, SHAPES, 2, RANK, 2 * 31 + 5))
    eplb.rearrange_expert_weights_inplace(old, new, w, PyNcclLike(group),
                                          allow_dropping_experts=True)
    torch.cuda.synchronize()
    compare("a lent ncclComm_t (PyNcclCommunicator-like)", w, old, new, rows, 2)

    # 3. The caller's stream: weights written on a side stream, handed over unsynchronized.
    old, new = maps(3, rows)
    host = base.make_weights(old, rows, SHAPES, 3, RANK, 3 * 31 + 5)
    side = torch.cuda.Stream()
    w = [[torch.empty_like(t, device="cuda") for t in layer] for layer in host]
    pinned = [[t.pin_memory() for t in layer] for layer in host]
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time before the copies land
        for dst_layer, src_layer in zip(w, pinned):
            for d, s in zip(dst_layer, src_layer):
                d.copy_(s, non_blocking=True)
    with eplb.Rebalancer(old, new, w, group, allow_dropping_experts=True) as r:
        for l in range(len(old)):
            r.start(l, side)
            r.finish(l, side)
    side.synchronize()
    compare("weights written on the caller's stream, no sync", w, old, new, rows, 3)

    # 4. Asynchronous layers next to a matmul on another stream.
    old, new = maps(4, rows, layers=4)
    w = on_gpu(base.make_weights(old, rows, SHAPES, 4, RANK, 4 * 31 + 5))
    torch.cuda.synchronize()
    busy = torch.cuda.Stream()
    a = torch.randn(4096, 4096, device="cuda")
    held, latency, polls = [], [], 0
    with eplb.Rebalancer(old, new, w, group, allow_dropping_experts=True) as r:
        with torch.cuda.stream(busy):
            for _ in range(20):
                a = a @ a / 64.0
        for l in range(len(old)):
            t0 = time.perf_counter()
            r.start(l)
            t1 = time.perf_counter()
            while not r.test(l):
                polls += 1
                time.sleep(0.0002)
            t2 = time.perf_counter()
            r.finish(l)
            t3 = time.perf_counter()
            held.append((t1 - t0) + (t3 - t2))
            latency.append(t3 - t0)
    torch.cuda.synchronize()
    compare("asynchronous layers beside a matmul", w, old, new, rows, 4)
    say("  per layer: latency %.2f ms (median), host held in start+finish %.3f ms (max), "
        "%d polls" % (1e3 * sorted(latency)[len(latency) // 2], 1e3 * max(held), polls))
    check(max(held) < 0.05, "start+finish held the host %.1f ms" % (1e3 * max(held)))

    # 5. A silent peer.
    if SIZE >= 2:
        old, new = maps(5, rows)
        w = on_gpu(base.make_weights(old, rows, SHAPES, 5, RANK, 5 * 31 + 5))
        # A communicator of its own with a short deadline (PyNccl-like keeps it separate).
        lent = PyNcclLike(group)
        start = time.time()
        try:
            if RANK == 1:
                time.sleep(8)
            eplb.rearrange_expert_weights_inplace(old, new, w, lent, timeout=3.0,
                                                  allow_dropping_experts=True)
            check(RANK == 1, "rank %d: a silent peer went unnoticed" % RANK)
        except eplb.EplbError as e:
            waited = time.time() - start
            if RANK == 0:
                check(e.status in (eplb._lib.EPLB_ERR_TIMEOUT, eplb._lib.EPLB_ERR_COMM),
                      "silent peer: status %d" % e.status)
                check(waited < 8, "gave up after %.1f s (deadline 3 s)" % waited)
                check("1" in e.message, "the message names rank 1: %s" % e.message)
                say("case %-50s ok (%.1f s: %s)" % ("a silent peer", waited, e.message[:160]))
    print("[rank %d] %d failed" % (RANK, len(failures)), flush=True)
    sys.stdout.flush()
    os._exit(1 if failures else 0)  # the silent-peer case leaves an aborted communicator


if __name__ == "__main__":
    main()
