#!/usr/bin/python3
"""A second, independent implementation of DeepSeek's EPLB in Python + numpy, written from
the algorithm's description (docs/PLACEMENT.md, "Making a placement: balance"), and a
driver that checks `eplb-rebalance balance` against it on generated loads.

    eplb_reference.py BINARY WORKDIR      -> exit 0 when every case agrees

Arithmetic is float32 as in the reference: loads are cast to float32, packs accumulate in
float32, replicas compare load / count in float32.
"""
import json
import subprocess
import sys

import numpy as np


def pack_evenly(weights, num_packs):
    """Items (float32 weights) into packs of equal item counts: heaviest first (ties keep
    index order), each into the lightest pack that has room (first such pack on ties).
    With one item per pack, item i simply goes to pack i."""
    n = len(weights)
    per_pack = n // num_packs
    if per_pack == 1:
        return list(range(n)), [0] * n
    order = sorted(range(n), key=lambda i: -float(weights[i]))  # sorted() is stable
    totals = [np.float32(0.0)] * num_packs
    sizes = [0] * num_packs
    where, position = [0] * n, [0] * n
    for item in order:
        open_packs = [p for p in range(num_packs) if sizes[p] < per_pack]
        chosen = min(open_packs, key=lambda p: totals[p])  # min() keeps the first minimum
        where[item], position[item] = chosen, sizes[chosen]
        sizes[chosen] += 1
        totals[chosen] = np.float32(totals[chosen] + weights[item])
    return where, position


def add_replicas(weights, num_slots):
    """Slots for each expert once, then each extra slot to the expert whose load per replica
    is highest (argmax: the first of equal maxima)."""
    counts = np.ones(len(weights), dtype=np.int64)
    slots = list(range(len(weights)))
    for _ in range(len(weights), num_slots):
        per_replica = weights / counts.astype(np.float32)
        best = int(np.argmax(per_replica))
        slots.append(best)
        counts[best] += 1
    return slots, counts


def eplb_layer(loads, num_replicas, num_groups, num_nodes, num_gpus):
    num_experts = len(loads)
    if num_groups % num_nodes != 0:  # no hierarchy possible: one group, one node
        num_groups, num_nodes = 1, 1
    weights = np.asarray(loads, dtype=np.float32)
    group_size = num_experts // num_groups
    group_load = np.array([np.float32(np.sum(np.asarray(loads[g * group_size:(g + 1) * group_size],
                                                        dtype=np.float64)))
                           for g in range(num_groups)], dtype=np.float32)
    node_of_group, rank_of_group = pack_evenly(group_load, num_nodes)
    per_node = num_experts // num_nodes
    node_experts = [[-1] * per_node for _ in range(num_nodes)]
    for g in range(num_groups):
        for j in range(group_size):
            node_experts[node_of_group[g]][rank_of_group[g] * group_size + j] = g * group_size + j
    slots_per_node = num_replicas // num_nodes
    slots_per_gpu = num_replicas // num_gpus
    result = [-1] * num_replicas
    for node in range(num_nodes):
        ids = node_experts[node]
        node_weights = weights[ids]
        slots, counts = add_replicas(node_weights, slots_per_node)
        slot_weights = np.array([node_weights[k] / np.float32(counts[k]) for k in slots],
                                dtype=np.float32)
        gpu, row = pack_evenly(slot_weights, num_gpus // num_nodes)
        for i, k in enumerate(slots):
            result[node * slots_per_node + gpu[i] * slots_per_gpu + row[i]] = ids[k]
    return result


def eplb(loads, num_replicas, num_groups, num_nodes, num_gpus):
    return [eplb_layer(layer, num_replicas, num_groups, num_nodes, num_gpus) for layer in loads]


# ---------------------------------------------------------------------------------------
README = dict(loads=[[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                     [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]],
              replicas=16, groups=4, nodes=2, gpus=8,
              expected=[[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                        [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]])


def cases(rng):
    def ints(layers, experts, high):
        return rng.integers(0, high, size=(layers, experts)).tolist()
    skew = lambda layers, experts: np.round(1000 * rng.lognormal(0, 1.2, (layers, experts))).astype(int).tolist()
    ties = rng.choice([0, 5, 10], size=(4, 32)).tolist()
    ties[1] = [0] * 32          # an all-zero layer
    ties[2] = [7] * 32          # every expert equal
    yield "random", ints(4, 64, 1000), 80, 8, 2, 8
    yield "skewed DeepSeek-V3 shape", skew(3, 256), 288, 8, 4, 32
    yield "ties and zero layers", ties, 48, 4, 2, 8
    yield "one node", ints(3, 48, 500), 64, 4, 1, 8
    yield "groups not divisible by nodes", ints(3, 24, 300), 32, 3, 2, 8
    yield "one group per node", ints(3, 32, 300), 48, 4, 4, 8
    yield "one slot per GPU", skew(2, 8), 16, 2, 2, 16
    yield "no redundant slots", ints(2, 16, 100), 16, 4, 2, 4
    yield "fractional loads", (rng.integers(0, 400, size=(3, 40)) / 4.0).tolist(), 60, 5, 5, 10
    yield "global, many ties", rng.choice([1, 2], size=(3, 30)).tolist(), 45, 1, 3, 15


def run_case(binary, work, name, loads, replicas, groups, nodes, gpus, form="array"):
    load_path, out_path = f"{work}/load.json", f"{work}/out.json"
    doc = loads
    if form == "steps":  # [steps][layers][experts], summed over steps
        half = [[v // 2 if isinstance(v, int) else v / 2 for v in layer] for layer in loads]
        rest = [[v - h for v, h in zip(layer, hl)] for layer, hl in zip(loads, half)]
        doc = [half, rest]
    elif form == "sglang":
        doc = {"rank": 0, "logical_count": [loads]}
    with open(load_path, "w") as f:
        json.dump(doc, f)
    cmd = [binary, "balance", "--load", load_path, "--num-replicas", str(replicas),
           "--num-groups", str(groups), "--num-nodes", str(nodes), "--ep-size", str(gpus),
           "--output", out_path]
    if form == "sglang":  # SGLang's rows are hidden layers: say they are all MoE layers
        cmd += ["--model-layers", f"0-{len(loads) - 1}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"FAIL {name}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return False
    got = json.load(open(out_path))
    want = eplb(loads, replicas, groups, nodes, gpus)
    ok = (got["physical_to_logical_map"] == want and got["ep_size"] == gpus
          and got["num_slots_per_rank"] == replicas // gpus)
    print(f"{'ok  ' if ok else 'FAIL'} {name} ({form})")
    if not ok:
        print(f"  want {want}\n  got  {got['physical_to_logical_map']}")
    return ok


def main():
    binary, work = sys.argv[1], sys.argv[2]
    ok = True
    # The Python implementation itself first reproduces the README.
    mine = eplb(README["loads"], README["replicas"], README["groups"], README["nodes"], README["gpus"])
    if mine != README["expected"]:
        print(f"FAIL the Python implementation does not reproduce the README: {mine}")
        ok = False
    ok = run_case(binary, work, "README example", README["loads"], 16, 4, 2, 8) and ok
    rng = np.random.default_rng(20260101)
    for i, (name, loads, replicas, groups, nodes, gpus) in enumerate(cases(rng)):
        form = ["array", "steps", "sglang"][i % 3]
        ok = run_case(binary, work, name, loads, replicas, groups, nodes, gpus, form) and ok
    for trial in range(20):  # random shapes
        nodes = int(rng.integers(1, 4))
        gpus = nodes * int(rng.integers(1, 5))
        groups = int(rng.choice([1, 2, 3, 4, 6]))
        experts = groups * int(rng.integers(1, 6)) * nodes
        replicas = gpus * int(rng.integers(1, 4))
        while replicas < experts:
            replicas += gpus
        loads = rng.integers(0, int(rng.choice([3, 50, 10000])), size=(2, experts)).tolist()
        ok = run_case(binary, work, f"random shape {trial}: E{experts} R{replicas} G{groups} "
                      f"N{nodes} GPUs{gpus}", loads, replicas, groups, nodes, gpus) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
