#!/usr/bin/env python3
"""Writes placement JSON files for the end-to-end tests.

  placements.py vector NAME OUTDIR          one of the test vectors of VECTORS (old.json, new.json)
  placements.py random SEED EP L E LAYERS OUTDIR [NEW_EP]
      random old/new placements: replicas, two copies on one rank, empty slots; every
      expert of new is held by old in that layer, and every expert old holds keeps a
      slot in new where new has enough slots (so nothing is dropped).
"""
import json
import os
import random
import sys

VECTORS = {
    "identity": (2, 2, [[0, 1, 2, 3]], 2, 2, [[0, 1, 2, 3]]),
    "swap": (2, 2, [[0, 1, 2, 3]], 2, 2, [[2, 1, 0, 3]]),
    "replicate": (2, 2, [[0, 1, 2, 3]], 2, 2, [[0, 0, 1, 1]]),
    "scale_up": (2, 2, [[0, 1, 2, 3]], 3, 2, [[0, 1, 2, 3, 1, 2]]),
    "scale_down": (3, 2, [[0, 1, 2, 3, 1, 2]], 2, 2, [[3, 2, 1, 0]]),
    "invalid": (2, 2, [[0, 1, 2, 3]], 2, 2, [[0, 1, 2, 4]]),
}


def write(path, ep, slots, experts, rows):
    with open(path, "w") as f:
        json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep,
                   "num_slots_per_rank": slots, "num_logical_experts": experts,
                   "physical_to_logical_map": rows}, f)


def random_layer(rng, ep, slots, experts, must_cover):
    n = ep * slots
    if must_cover:
        ids = list(range(experts)) + [rng.randrange(experts) for _ in range(n - experts)]
        rng.shuffle(ids)
        return ids
    ids = [rng.randrange(experts) for _ in range(n)]
    for _ in range(rng.randrange(3)):  # a few empty slots
        ids[rng.randrange(n)] = -1
    if rng.random() < 0.3 and slots >= 2:  # two copies of one expert on one rank
        r = rng.randrange(ep)
        ids[r * slots + 1] = ids[r * slots] if ids[r * slots] >= 0 else 0
    return ids


def main():
    if sys.argv[1] == "vector":
        name, out = sys.argv[2], sys.argv[3]
        oep, osl, old, nep, nsl, new = VECTORS[name]
        experts = 5 if name == "invalid" else 4
        write(os.path.join(out, "old.json"), oep, osl, experts, old)
        write(os.path.join(out, "new.json"), nep, nsl, experts, new)
        return
    seed, ep, slots, experts, layers = map(int, sys.argv[2:7])
    out = sys.argv[7]
    new_ep = int(sys.argv[8]) if len(sys.argv) > 8 else ep
    rng = random.Random(seed)
    old = [random_layer(rng, ep, slots, experts, True) for _ in range(layers)]
    new = []
    for layer in old:
        held = sorted(set(x for x in layer if x >= 0))
        ids = random_layer(rng, new_ep, slots, experts, False)
        row = [held[x % len(held)] if x >= 0 else -1 for x in ids]
        if len(held) <= len(row):
            for e in held:
                if e in row:
                    continue
                # An empty slot or a surplus replica makes room: no expert is dropped.
                spare = [i for i, x in enumerate(row) if x == -1 or row.count(x) > 1]
                row[rng.choice(spare)] = e
        new.append(row)
    write(os.path.join(out, "old.json"), ep, slots, experts, old)
    write(os.path.join(out, "new.json"), new_ep, slots, experts, new)


if __name__ == "__main__":
    main()
