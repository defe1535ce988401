#!/usr/bin/env python3
"""Writes the load-statistics fixtures of test/data/loads/, each the way its engine's own
writer writes it (README.md names every source). All of them hold the same logical loads of
a model with 5 hidden layers whose layers 3 and 4 are MoE layers of 4 routed experts, as
DeepSeek-V3 has dense layers 0-2:

    model layer 3: [90, 132, 40, 61]      model layer 4: [20, 107, 104, 64]

so that `balance` must make the same placement from every one of them.

Run from anywhere: python3 test/data/loads/make_fixtures.py (torch is needed for the
SGLang .pt only; the other fixtures are written with the standard library).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TOTALS = {3: [90, 132, 40, 61], 4: [20, 107, 104, 64]}
NUM_HIDDEN = 5
NUM_EXPERTS = 4


def sglang():
    """SGLang: python/sglang/srt/eplb/expert_distribution.py, _StatAccumulator.dump():
    torch.save(dict(rank=..., logical_count=<int32 [steps, num_layers, num_logical_experts]>,
    average_utilization_rate_over_window=...)) to expert_distribution_recorder_<time>.pt, where
    num_layers is the model's num_hidden_layers (get_model_config_for_expert_location), dense
    layers counting 0. Two buffered steps here."""
    step0 = [[0] * NUM_EXPERTS for _ in range(NUM_HIDDEN)]
    step1 = [[0] * NUM_EXPERTS for _ in range(NUM_HIDDEN)]
    for layer, row in TOTALS.items():
        for e, v in enumerate(row):
            step0[layer][e] = v // 3
            step1[layer][e] = v - v // 3
    record = {"rank": 0, "logical_count": [step0, step1],
              "average_utilization_rate_over_window": None}
    try:
        import torch
        torch.save({"rank": 0, "logical_count": torch.tensor([step0, step1], dtype=torch.int32),
                    "average_utilization_rate_over_window": None},
                   os.path.join(HERE, "sglang", "expert_distribution_recorder_1765100000.0.pt"))
    except ImportError:
        print("torch missing: the .pt fixture is left as it is")
    # What scripts/sglang-loads-to-json.py makes of the .pt (its test compares the two).
    with open(os.path.join(HERE, "sglang", "expert_distribution_recorder.json"), "w") as f:
        json.dump(record, f)
        f.write("\n")


def vllm():
    """vLLM: the load-stats JSONL of EPLB's write_stats_path, as vLLM reads it back
    (vllm/distributed/eplb/stats_loader.py parse_stats_jsonl, pinned by its unit tests;
    tools/eplb/generate_static_mapping.py): one eplb_load_meta record, then one
    eplb_load_stats record per step with expert_load [MoE layers][physical slots] and the
    step's p2l_map [MoE layers][physical slots]. vLLM counts MoE layers from 0. Two steps,
    under two different maps of 6 slots on 2 ranks (2 redundant experts)."""
    maps = [[[0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 3, 2]],
            [[3, 2, 0, 1, 1, 0], [0, 1, 1, 2, 3, 3]]]
    totals = [TOTALS[3], TOTALS[4]]
    loads = [[[0] * 6 for _ in range(2)] for _ in range(2)]
    for layer in range(2):
        for e in range(NUM_EXPERTS):
            first = totals[layer][e] // 2
            for step, share in ((0, first), (1, totals[layer][e] - first)):
                slots = [p for p, x in enumerate(maps[step][layer]) if x == e]
                for k, p in enumerate(slots):  # split over the expert's replicas
                    loads[step][layer][p] += share // len(slots) + (share % len(slots) if k == 0 else 0)
    lines = [{"record_type": "eplb_load_meta", "version": 1, "model": "deepseek-like-test",
              "num_ranks": 2, "num_groups": 1, "num_nodes": 1, "num_layers": 2,
              "num_redundant_experts": 2}]
    for step in range(2):
        lines.append({"record_type": "eplb_load_stats", "version": 1, "step": 1000 * (step + 1),
                      "num_ranks": 2, "expert_load": loads[step], "p2l_map": maps[step]})
    with open(os.path.join(HERE, "vllm", "eplb-load-stats.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def safetensors(path, tensors):
    """The safetensors layout (8-byte little-endian header length, JSON header padded with
    spaces to a multiple of 8, then the data), as safetensors.torch.save_file writes it."""
    header, data = {}, b""
    for name, values in tensors:
        raw = struct.pack("<%dq" % len(values), *values)
        header[name] = {"dtype": "I64", "shape": [len(values)],
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def trtllm():
    """TensorRT-LLM: tensorrt_llm/_torch/expert_statistic.py (ExpertStatistic._set_iter): rank 0
    writes meta_info.json {"num_experts", "num_experts_per_token"}, every rank writes
    rank<r>.safetensors (safetensors.torch.save_file) with one int64 tensor "<iter>_<layer>"
    per recorded iteration and model layer: torch.bincount of the experts that rank's tokens
    chose. examples/ep_load_balancer/utils.py sums the ranks. Iterations 100-101, 2 ranks,
    model layers 3 and 4."""
    d = os.path.join(HERE, "trtllm")
    with open(os.path.join(d, "meta_info.json"), "w") as f:
        json.dump({"num_experts": NUM_EXPERTS, "num_experts_per_token": 2}, f)
    per_rank = {0: [], 1: []}
    for it in (100, 101):
        for layer, row in TOTALS.items():
            quarter = [v // 4 for v in row]
            last = [v - 3 * (v // 4) for v in row]
            shares = {(100, 0): quarter, (100, 1): quarter, (101, 0): quarter, (101, 1): last}
            per_rank[0].append(("%d_%d" % (it, layer), shares[(it, 0)]))
            per_rank[1].append(("%d_%d" % (it, layer), shares[(it, 1)]))
    for rank, tensors in per_rank.items():
        safetensors(os.path.join(d, "rank%d.safetensors" % rank), tensors)


if __name__ == "__main__":
    for sub in ("sglang", "vllm", "trtllm"):
        os.makedirs(os.path.join(HERE, sub), exist_ok=True)
    sglang()
    vllm()
    trtllm()
