#!/usr/bin/env python3
"""In-server rearrangement, side by side on the same tensors, process group and GPUs:

  (a) the seed's pattern, as vLLM's move_to_buffer/move_from_buffer do it: per layer, local
      rows into a one-layer buffer, one torch P2P op per expert tensor (vLLM's sender rule,
      sorted by expert id), batch_isend_irecv, then the buffer copied into place;
  (b) eplb_rebalance.rearrange_expert_weights_inplace (libeplb: one packed stream per peer);
  (c) eplb_rebalance's asynchronous API, layer by layer: per-layer latency, and how long the
      host and the default stream were held.

  torchrun --nproc_per_node=N bench/inserver.py --model qwen3-30b-a3b --layers 8

Both (a) and (b) run old -> new then new -> old, repeatedly; the final tensors of (a) and (b)
are compared byte for byte on every rank. Prints a table and the ratio (a) / (b).
"""

import argparse
import os
import random
import statistics
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import eplb_rebalance as eplb  # noqa: E402

# (name, dtype, shape of one expert's row) per model; the experts, as the models have them.
MODELS = {
    "qwen3-30b-a3b": (128, [("w13", torch.bfloat16, (1536, 2048)),
                            ("w2", torch.bfloat16, (2048, 768))]),
    "deepseek-v3": (256, [("w13", torch.uint8, (4096, 7168)), ("w2", torch.uint8, (7168, 2048)),
                          ("w13_scale", torch.float32, (32, 56)),
                          ("w2_scale", torch.float32, (56, 16))]),
}


def placements(num_layers, experts, slots, seed):
    """Old and new maps: every expert once plus replicas, shuffled per layer (most slots move)."""
    rng = random.Random(seed)
    out = []
    for _ in range(2):
        layers = []
        for _ in range(num_layers):
            ids = list(range(experts)) + [rng.randrange(experts) for _ in range(slots - experts)]
            rng.shuffle(ids)
            layers.append(ids)
        out.append(layers)
    return out


def vllm_pattern(weights, old, new, rows, rank, size, buffer):
    """One rearrangement the way the seed does it (see the module docstring)."""
    for l, layer in enumerate(weights):
        o, n = old[l], new[l]
        holders, needers = {}, {}
        for p, e in enumerate(o):
            if p // rows not in holders.setdefault(e, []):
                holders[e].append(p // rows)
        for p, e in enumerate(n):
            if p // rows not in needers.setdefault(e, []):
                needers[e].append(p // rows)
        mine_old = o[rank * rows:(rank + 1) * rows]
        mine_new = n[rank * rows:(rank + 1) * rows]
        # Local rows into the buffer.
        for i, e in enumerate(mine_new):
            if mine_old[i] != e and e in mine_old:
                src = mine_old.index(e)
                for w, b in zip(layer, buffer):
                    b[i].copy_(w[src], non_blocking=True)
        sends, recvs = [], []
        for e, need in needers.items():
            s = holders[e]
            r = [x for x in need if x not in s]
            k = len(r) // len(s)
            for i, sender in enumerate(s):
                mine = r[i * k:i * k + k] + ([r[len(s) * k + i]] if len(s) * k + i < len(r) else [])
                for dst in mine:
                    if sender == rank:
                        sends.append((e, dst))
                    if dst == rank:
                        recvs.append((e, sender))
        ops = []
        for e, dst in sorted(sends):
            for w in layer:
                ops.append(dist.P2POp(dist.isend, w[mine_old.index(e)], dst))
        received = {}
        for e, src in sorted(recvs):
            row = mine_new.index(e)
            received[e] = row
            for b in buffer:
                ops.append(dist.P2POp(dist.irecv, b[row], src))
        if ops:
            for req in dist.batch_isend_irecv(ops):
                req.wait()
        # The buffer into place.
        for i, e in enumerate(mine_new):
            if mine_old[i] == e:
                continue
            src = received.get(e, i)
            for w, b in zip(layer, buffer):
                w[i].copy_(b[src] if e in received else b[i], non_blocking=True)


def timed(fn, iterations):
    times = []
    for _ in range(iterations):
        torch.cuda.synchronize()
        dist.barrier()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        dist.barrier()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen3-30b-a3b")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--redundant", type=int, default=0, help="replica slots (default: 2 per GPU)")
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group("nccl")
    experts, tensors = MODELS[args.model]
    slots = experts + (args.redundant or 2 * size)
    slots += (-slots) % size
    rows = slots // size
    old, new = placements(args.layers, experts, slots, 2026)
    gen = torch.Generator(device="cuda").manual_seed(1)

    def expert_rows(layer_map):
        """This rank's tensors for a map: row i holds a pattern of its logical expert."""
        out = []
        for l, m in enumerate(layer_map):
            layer = []
            for k, (_, dtype, shape) in enumerate(tensors):
                t = torch.empty((rows,) + shape, dtype=dtype, device="cuda")
                raw = t.view(torch.uint8).reshape(rows, -1)
                for i in range(rows):
                    e = m[rank * rows + i]
                    raw[i] = (torch.arange(raw.shape[1], device="cuda", dtype=torch.int32) *
                              (e * 7 + l * 3 + k + 1)).to(torch.uint8)
                layer.append(t)
            out.append(layer)
        return out

    expert_bytes = sum(torch.empty(s, dtype=d).numel() * torch.empty(0, dtype=d).element_size()
                       for _, d, s in tensors)
    ours_w = expert_rows(old)
    vllm_w = [[t.clone() for t in layer] for layer in ours_w]
    buffer = [torch.empty_like(t) for t in vllm_w[0]]
    del gen

    # Correctness first: one old -> new by each, compared byte for byte.
    report = eplb.rearrange_expert_weights_inplace(old, new, ours_w, dist.group.WORLD)
    vllm_pattern(vllm_w, old, new, rows, rank, size, buffer)
    torch.cuda.synchronize()
    same = all(torch.equal(a, b) for la, lb in zip(ours_w, vllm_w) for a, b in zip(la, lb))
    flag = torch.tensor([0 if same else 1], device="cuda")
    dist.all_reduce(flag)
    busiest = torch.tensor([max(report["bytes_sent"], report["bytes_received"])], device="cuda")
    dist.all_reduce(busiest, op=dist.ReduceOp.MAX)

    # Then timed, back and forth (the tensors stay valid).
    state = {"forward": False}

    def ours():
        a, b = (old, new) if state["forward"] else (new, old)
        state["forward"] = not state["forward"]
        eplb.rearrange_expert_weights_inplace(a, b, ours_w, dist.group.WORLD)

    def vllm():
        a, b = (old, new) if state["forward"] else (new, old)
        state["forward"] = not state["forward"]
        vllm_pattern(vllm_w, a, b, rows, rank, size, buffer)

    t_ours = timed(ours, 2 * args.iterations)
    state["forward"] = False
    t_vllm = timed(vllm, 2 * args.iterations)

    # The asynchronous API, layer by layer, on the default stream.
    lat, held, waited = [], [], []
    with eplb.Rebalancer(new, old, ours_w, dist.group.WORLD) as r:  # ours_w holds `new` now
        for l in range(args.layers):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            r.start(l)
            t1 = time.perf_counter()
            while not r.test(l):
                time.sleep(0.0001)
            t2 = time.perf_counter()
            before, after = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            before.record()
            r.finish(l)
            after.record()
            t3 = time.perf_counter()
            torch.cuda.synchronize()
            lat.append(t3 - t0)
            held.append((t1 - t0) + (t3 - t2))
            waited.append(before.elapsed_time(after) / 1e3)
    if rank == 0:
        gb = busiest.item() / 1e9
        print("bench inserver: %s, %d GPUs (%s), %d layers, %d slots (%d per GPU), %.1f MiB per "
              "expert, busiest rank moves %.2f GB" %
              (args.model, size, torch.cuda.get_device_name(), args.layers, slots, rows,
               expert_bytes / 2**20, gb))
        print("identical results (vLLM pattern vs eplb): %s" % ("yes" if flag.item() == 0 else "NO"))
        print("%-34s %10s %10s" % ("method", "seconds", "GB/s"))
        print("%-34s %10.4f %10.1f" % ("vLLM pattern (P2P per tensor)", t_vllm, gb / t_vllm))
        print("%-34s %10.4f %10.1f" % ("eplb_rebalance (blocking)", t_ours, gb / t_ours))
        print("ratio eplb / vLLM pattern: %.2fx faster" % (t_vllm / t_ours))
        print("async per layer: latency median %.2f ms, max %.2f ms; host held in start+finish "
              "max %.3f ms; default stream busy with the copies into place, median %.3f ms" %
              (1e3 * statistics.median(lat), 1e3 * max(lat), 1e3 * max(held),
               1e3 * statistics.median(waited)))
    ok = flag.item() == 0
    dist.destroy_process_group()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
