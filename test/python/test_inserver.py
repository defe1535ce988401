#!/usr/bin/env python3
"""eplb_rebalance (the in-server library) against an independent oracle, on CPU tensors
under mpirun (the MPI world is the EP group): every case's result is compared byte for byte
with a short port of vLLM's algorithm (rebalance_execute.py, as docs/BRIEF describes it),
written here and sharing no code with the library.

  mpirun -np N python3 test/python/test_inserver.py   (N = 2..4; cases needing more skip)

Needs torch (Debian's python3-torch) and numpy; EPLB_MPI_LIBRARY or EPLB_LIBRARY names the
built library. Prints one line per case on rank 0 and exits 1 if any check failed anywhere.
"""

import os
import random
import sys
import time

try:
    import numpy as np
    import torch
except ImportError as missing:  # Debian's python3-torch and python3-numpy (install-deps.sh)
    print("test_inserver: skipped: %s" % missing)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import eplb_rebalance as eplb  # noqa: E402

RANK = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
SIZE = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("PMI_SIZE", "1")))
failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print("[rank %d] FAILED: %s" % (RANK, what), flush=True)


# ------------------------------------------------------------------ the oracle -----

def expert_bytes(seed, layer, k, expert, row_bytes):
    """The bytes of logical expert `expert`'s tensor k in `layer`: the same in every replica."""
    rng = np.random.default_rng([seed, layer, k, expert + 7])
    return rng.integers(0, 256, row_bytes, dtype=np.uint8)


def vllm_oracle(old, new, rows, old_state):
    """vLLM's rearrangement of one layer, over every rank at once. old/new: flat maps;
    old_state[rank][k][row]: bytes (numpy uint8). Returns new_state[rank][k][row].

    Per rank: a row keeping its expert is unchanged; one whose expert the rank held in old
    is filled from the lowest such old row; otherwise the expert is received once, into the
    lowest row needing it (the sender: S = old holders ascending, R = new needers not in S,
    k = |R| // |S|, sender i serves R[i*k:i*k+k] and R[|S|*k + i]), and further rows needing
    it copy that row; empty slots are zeros."""
    old_ranks = len(old) // rows
    new_ranks = len(new) // rows
    num_tensors = len(old_state[0]) if old_state else 0
    holders = {}
    for p, e in enumerate(old):
        if e >= 0 and p // rows not in holders.setdefault(e, []):
            holders[e].append(p // rows)
    needers = {}
    for p, e in enumerate(new):
        if e >= 0 and p // rows not in needers.setdefault(e, []):
            needers[e].append(p // rows)
    sender_of = {}  # (expert, receiving rank) -> sending rank
    for e, need in needers.items():
        s = holders.get(e, [])
        r = [x for x in need if x not in s]
        if not s:
            continue
        k = len(r) // len(s)
        for i, sender in enumerate(s):
            for x in r[i * k:i * k + k]:
                sender_of[(e, x)] = sender
            if len(s) * k + i < len(r):
                sender_of[(e, r[len(s) * k + i])] = sender

    def old_row_of(rank, e):
        return min(i for i in range(rows) if old[rank * rows + i] == e)

    out = []
    for rank in range(new_ranks):
        tensors = []
        for k in range(num_tensors):
            size = len(old_state[0][k][0])
            result = [None] * rows
            received = {}
            for i in range(rows):
                e = new[rank * rows + i]
                here = old_state[rank][k] if rank < old_ranks else None
                if e < 0:
                    result[i] = np.zeros(size, np.uint8)
                elif here is not None and old[rank * rows + i] == e:
                    result[i] = here[i].copy()
                elif rank < old_ranks and e in old[rank * rows:rank * rows + rows]:
                    result[i] = here[old_row_of(rank, e)].copy()
                elif e in received:
                    result[i] = result[received[e]].copy()
                else:
                    sender = sender_of[(e, rank)]
                    result[i] = old_state[sender][k][old_row_of(sender, e)].copy()
                    received[e] = i
            tensors.append(result)
        out.append(tensors)
    return out


# --------------------------------------------------------------------- helpers -----

DTYPES = [torch.float32, torch.bfloat16, torch.uint8, torch.int16]


def make_weights(old_maps, rows, shapes, seed, rank, garbage_seed):
    """This rank's tensors for the old maps: expert bytes in held slots, noise in empty."""
    layers = []
    for l, m in enumerate(old_maps):
        tensors = []
        for k, (dtype, shape) in enumerate(shapes):
            t = torch.zeros((rows,) + shape, dtype=dtype)
            raw = t.view(torch.uint8).reshape(rows, -1)
            for i in range(rows):
                p = rank * rows + i
                e = m[p] if p < len(m) else -1
                if e >= 0:
                    raw[i] = torch.from_numpy(expert_bytes(seed, l, k, e, raw.shape[1]))
                else:
                    rng = np.random.default_rng([garbage_seed, rank, l, k, i])
                    raw[i] = torch.from_numpy(rng.integers(0, 256, raw.shape[1], dtype=np.uint8))
            tensors.append(t)
        layers.append(tensors)
    return layers


def global_state(old_maps, rows, shapes, seed, num_ranks, garbage_seed):
    """Every rank's old bytes, per layer: [layer][rank][k][row] (numpy)."""
    per_rank = [make_weights(old_maps, rows, shapes, seed, r, garbage_seed) for r in range(num_ranks)]
    state = []
    for l in range(len(old_maps)):
        state.append([[[t.view(torch.uint8).reshape(rows, -1)[i].numpy().copy()
                        for i in range(rows)] for t in per_rank[r][l]] for r in range(num_ranks)])
    return state


def padded(new_map, rows, rank_mapping):
    """vLLM's scale-down: the new map speaks of new ranks; rank r of the (old) group holds new
    rank rank_mapping[r]'s slots, or nothing when it is removed."""
    if rank_mapping is None or len(rank_mapping) != SIZE:
        return new_map
    out = []
    for r in range(SIZE):
        j = rank_mapping.get(r, -1)
        out += new_map[j * rows:j * rows + rows] if j >= 0 else [-1] * rows
    return out


def run_case(name, old_maps, new_maps, rows, shapes, seed=1, rank_mapping=None, mode="blocking",
             allow=False):
    """Rebalances this rank's tensors with the library and checks them against the oracle."""
    old_ranks = len(old_maps[0]) // rows
    garbage = seed * 31 + 5
    # In vLLM's elastic EP every rank of the group has its tensors, before and after.
    mine = make_weights(old_maps, rows, shapes, seed, RANK if RANK < old_ranks else 10**6, garbage)
    state = global_state(old_maps, rows, shapes, seed, old_ranks, garbage)
    start = time.time()
    report = None
    if mode == "blocking":
        report = eplb.rearrange_expert_weights_inplace(
            torch.tensor(old_maps), torch.tensor(new_maps), mine, None, False, rank_mapping,
            allow_dropping_experts=allow)
    else:
        with eplb.Rebalancer(old_maps, new_maps, mine, None, rank_mapping,
                             allow_dropping_experts=allow) as r:
            for l in range(len(old_maps)):
                r.start(l)
                while not r.test(l):
                    time.sleep(0.001)
                report = r.finish(l)
    seconds = time.time() - start
    removed = (rank_mapping is not None and len(rank_mapping) == SIZE and
               rank_mapping.get(RANK, -1) < 0)
    ok = True
    for l in range(len(old_maps)):
        if removed:
            break  # a removed rank only sends: its tensors are no longer anyone's
        want = vllm_oracle(old_maps[l], padded(new_maps[l], rows, rank_mapping), rows, state[l])
        for k, t in enumerate(mine[l]):
            got = t.view(torch.uint8).reshape(rows, -1)
            for i in range(rows):
                if not np.array_equal(got[i].numpy(), want[RANK][k][i]):
                    ok = False
                    check(False, "%s: layer %d, tensor %d, row %d differs from the oracle" %
                          (name, l, k, i))
    check(ok, name)
    if RANK == 0:
        print("case %-44s %s  (%.3f s, rank 0 sent %d B)" %
              (name, "ok" if ok else "FAILED", seconds, report["bytes_sent"] if report else 0),
              flush=True)


def expect_refusal(name, make, contains):
    """Every rank must raise EplbError (no hang), its message containing `contains` on the
    ranks given (a dict rank -> text, or one text for all)."""
    try:
        make()
        check(False, "%s: accepted" % name)
        return
    except eplb.EplbError as e:
        text = contains.get(RANK) if isinstance(contains, dict) else contains
        if text is not None:
            check(text in e.message, "%s: message %r lacks %r" % (name, e.message, text))
        check(e.status == 2, "%s: status %d, want EPLB_ERR_INPUT (2)" % (name, e.status))
    if RANK == 0:
        print("case %-44s refused on every rank" % name, flush=True)


def random_maps(rng, num_layers, ranks, rows, experts):
    """Old and new maps: every expert at least once, the rest replicas or empty."""
    maps = []
    for _ in range(2):
        layers = []
        for _ in range(num_layers):
            slots = ranks * rows
            ids = list(range(experts)) + [rng.randrange(experts) for _ in range(slots - experts)]
            if slots > experts + 1 and rng.random() < 0.5:
                ids[-1] = -1
            rng.shuffle(ids)
            layers.append(ids)
        maps.append(layers)
    return maps


# ----------------------------------------------------------------------- cases -----

def main():
    shapes = [(torch.float32, (4, 3)), (torch.bfloat16, (5,)), (torch.uint8, (33,))]
    n = SIZE
    # Vector 2 of the brief, on every rank count: a swap between the first two ranks.
    run_case("swap between ranks (brief vector 2)", [list(range(2 * n))],
             [[2, 1, 0, 3] + list(range(4, 2 * n))], 2, shapes)
    # Vector 3: replicas, expert 0 twice on rank 0, expert 1 twice on rank 1 (others dropped).
    run_case("replicas (brief vector 3)", [list(range(2 * n))],
             [[0, 0, 1, 1] + list(range(4, 2 * n))], 2, shapes, allow=True)
    # Two copies of one expert received by one rank, and an empty slot.
    rows = 3
    run_case("two copies on one rank, an empty slot", [list(range(rows * n))],
             [[rows * n - 1, rows * n - 1, -1] + list(range(rows, rows * n))], rows, shapes,
             allow=True)
    # Several layers, random placements, tensors of different dtypes and row sizes.
    rng = random.Random(2026)
    for i in range(4):
        experts = rng.randrange(n, 3 * n)
        rows = rng.randrange(2, 5)
        while rows * n < experts:
            rows += 1
        old, new = random_maps(rng, 3, n, rows, experts)
        mixed = [(DTYPES[j % 4], (rng.randrange(1, 6), 2)) for j in range(rng.randrange(1, 4))]
        run_case("random %d (%d experts, %d rows, %d tensors)" % (i, experts, rows, len(mixed)),
                 old, new, rows, mixed, seed=i + 10, allow=True)
    # The asynchronous API, layer by layer.
    old, new = random_maps(random.Random(7), 3, n, 3, 2 * n)
    run_case("asynchronous start/test/finish per layer", old, new, 3, shapes, mode="async",
             allow=True)
    if n >= 3:
        rows = 2
        # Scale-up 2 -> n ranks (vLLM's rank_mapping: old ranks keep their numbers): the
        # added ranks only receive.
        run_case("scale-up 2 -> %d (rank_mapping)" % n, [list(range(4))],
                 [[(p * 3) % 4 for p in range(rows * n)]], rows, shapes,
                 rank_mapping={0: 0, 1: 1})
        # Scale-down n -> n-1: the last rank is removed and only sends.
        kept = rows * (n - 1)
        old = [[p % kept for p in range(rows * n)]]
        new = [[(p + rows + 1) % kept for p in range(kept)]]
        mapping = {r: (r if r < n - 1 else -1) for r in range(n)}
        run_case("scale-down %d -> %d (rank %d removed)" % (n, n - 1, n - 1), old, new, rows,
                 shapes, rank_mapping=mapping)
    refusals()
    eplb.shutdown()


def refusals():
    n = SIZE
    rows = 2
    old = [list(range(rows * n)), list(range(rows * n))]
    new = [list(reversed(range(rows * n))), list(range(rows * n))]
    shapes = [(torch.float32, (3,)), (torch.uint8, (8,))]

    def weights():
        return make_weights(old, rows, shapes, 1, RANK, 9)

    # A non-contiguous tensor on rank 1 only: every rank refuses.
    def non_contiguous():
        w = weights()
        if RANK == 1:
            w[1][0] = torch.zeros((3, rows), dtype=torch.float32).t()
        eplb.rearrange_expert_weights_inplace(old, new, w)
    expect_refusal("a non-contiguous tensor on rank 1", non_contiguous,
                   {1: "layer 1, tensor 0 is not contiguous", 0: "rank(s) 1 refused"})

    # A dtype that differs between layers.
    def dtype_between_layers():
        w = weights()
        w[1][1] = torch.zeros((rows, 8), dtype=torch.int8)
        eplb.rearrange_expert_weights_inplace(old, new, w)
    expect_refusal("a dtype differing between layers", dtype_between_layers,
                   "layer 1, tensor 1: dtype or per-row shape differs")

    # Shapes that differ between ranks (same on every layer of a rank).
    def shape_between_ranks():
        w = weights()
        if RANK == n - 1:
            for layer in w:
                layer[1] = torch.zeros((rows, 9), dtype=torch.uint8)
        eplb.rearrange_expert_weights_inplace(old, new, w)
    expect_refusal("shapes differing between ranks", shape_between_ranks,
                   "the ranks passed different tensors")

    # Maps that differ between ranks.
    def maps_between_ranks():
        mine_new = [list(m) for m in new]
        if RANK == 0:
            mine_new[1] = list(reversed(mine_new[1]))
        eplb.rearrange_expert_weights_inplace(old, mine_new, weights())
    expect_refusal("maps differing between ranks", maps_between_ranks,
                   "the ranks passed different maps")

    # A new map that drops an expert (without allow_dropping_experts).
    def drops():
        dropped = [list(m) for m in new]
        dropped[0][0] = dropped[0][1]
        eplb.rearrange_expert_weights_inplace(old, dropped, weights())
    expect_refusal("a new map dropping an expert", drops, "logical expert")

    # An expert in new that no old slot holds (brief vector 5).
    def absent():
        bad = [list(m) for m in new]
        bad[0][0] = rows * n + 5
        eplb.rearrange_expert_weights_inplace(old, bad, weights())
    expect_refusal("a new expert no old slot holds", absent, "layer 0")

    # A row corrupted on its way into the last rank: every rank refuses to place anything.
    w = weights()
    before = [[t.clone() for t in layer] for layer in w]
    os.environ["EPLB_FAULT_CORRUPT_ROW"] = str(n - 1)
    try:
        eplb.rearrange_expert_weights_inplace(old, new, w)
        check(False, "a corrupted row was accepted")
    except eplb.EplbError as e:
        check(e.status == 3, "a corrupted row: status %d, want EPLB_ERR_CORRUPT (3)" % e.status)
        want = "do not match the checksum" if RANK == n - 1 else "another rank's received rows"
        check(want in e.message, "a corrupted row: message %r lacks %r" % (e.message, want))
    finally:
        del os.environ["EPLB_FAULT_CORRUPT_ROW"]
    same = all(torch.equal(a, b) for la, lb in zip(w, before) for a, b in zip(la, lb))
    check(same, "a refused corrupted row left a tensor changed")
    if RANK == 0:
        print("case %-44s %s" % ("a corrupted row, refused on every rank", "ok" if same else "FAILED"))

    # Nothing moved by any refusal, and a profile run moves nothing either.
    w = weights()
    before = [[t.clone() for t in layer] for layer in w]
    report = eplb.rearrange_expert_weights_inplace(old, new, w, None, True)
    same = all(torch.equal(a, b) for la, lb in zip(w, before) for a, b in zip(la, lb))
    check(same and report["staging_bytes"] > 0 and report["bytes_sent"] == 0,
          "is_profile: allocates (staging %d B) and moves nothing" % report["staging_bytes"])
    if RANK == 0:
        print("case %-44s %s" % ("is_profile moves nothing", "ok" if same else "FAILED"))
    # numpy arrays as weights.
    arrays = [[t.numpy() for t in layer] for layer in make_weights(old, rows,
                                                                    [(torch.float32, (3,))], 4,
                                                                    RANK, 9)]
    state = global_state(old, rows, [(torch.float32, (3,))], 4, n, 9)
    eplb.rearrange_expert_weights_inplace(old, new, arrays)
    ok = True
    for l in range(2):
        want = vllm_oracle(old[l], new[l], rows, state[l])
        for i in range(rows):
            ok &= np.array_equal(arrays[l][0].view(np.uint8).reshape(rows, -1)[i],
                                 want[RANK][0][i])
    check(ok, "numpy arrays as weights")
    if RANK == 0:
        print("case %-44s %s" % ("numpy arrays as weights", "ok" if ok else "FAILED"))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a crash is a failure, reported with the rank
        check(False, "exception: %r" % (e,))
        raise
    finally:
        print("[rank %d] %d checks, %d failed" % (RANK, checks, len(failures)), flush=True)
    sys.exit(1 if failures else 0)
