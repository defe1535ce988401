#!/usr/bin/env python3
# The benches' placement pair: old.json and new.json in DIR, EP ranks x slots per rank x
# layers, a few redundant slots (ep // 2, at least 1), each layer shuffled with a fixed
# seed so that runs compare the same moves.
#   usage: bench/placements.py DIR EP SLOTS_PER_RANK LAYERS
import json, random, sys

d, ep, slots, layers = sys.argv[1], *map(int, sys.argv[2:5])
experts = ep * slots - max(1, ep // 2)
rng = random.Random(11)


def layer():
    ids = list(range(experts)) + [rng.randrange(experts) for _ in range(ep * slots - experts)]
    rng.shuffle(ids)
    return ids


for name in ("old", "new"):
    json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep, "num_slots_per_rank": slots,
               "physical_to_logical_map": [layer() for _ in range(layers)]}, open(f"{d}/{name}.json", "w"))
