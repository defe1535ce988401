#!/usr/bin/env bash
# import / export of a synthetic DeepSeek-V3-like Hugging Face checkpoint (FP8 experts with
# F32 block scales, several safetensors files) against the storage roofline measured in the
# same run by the tool (`--roofline`: NP processes reading the bytes the job read while NP
# write the output's size, O_DIRECT, 1 MiB blocks; and the single-stream read + write).
#   usage: bench/hf_disk.sh BIN_DIR WORK_DIR [NP] [EXPERTS] [MOE_LAYERS]
# Defaults: 2 processes, 16 experts x 2 MoE layers of 44 MiB experts: a 1.5 GB checkpoint.
set -euo pipefail
bin=$(realpath "$1"); work=$(realpath -m "$2"); np=${3:-2}; experts=${4:-16}; layers=${5:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tool="$bin/eplb-rebalance"
# PYTHON: an interpreter with numpy (Debian's by default).
py=${PYTHON:-/usr/bin/python3}
rm -rf "$work"; mkdir -p "$work"
"$py" - "$work" "$experts" "$layers" "$np" <<'PY'
import json, os, random, struct, sys
import numpy as np
d, experts, layers, ep = sys.argv[1], *map(int, sys.argv[2:5])
hf = os.path.join(d, "hf"); os.makedirs(hf)
H, I = 7168, 2048
rng = np.random.default_rng(5)
tensors = [("model.embed_tokens.weight", "BF16", [4096, H])]
for L in range(1, layers + 1):
    tensors.append((f"model.layers.{L}.mlp.gate.weight", "BF16", [experts, H]))
    for e in range(experts):
        for n, shape in (("gate_proj", [I, H]), ("up_proj", [I, H]), ("down_proj", [H, I])):
            p = f"model.layers.{L}.mlp.experts.{e}.{n}."
            tensors.append((p + "weight", "F8_E4M3", shape))
            tensors.append((p + "weight_scale_inv", "F32", [(shape[0] + 127) // 128, (shape[1] + 127) // 128]))
size = {"BF16": 2, "F8_E4M3": 1, "F32": 4}
per_file = 400 << 20
files, cur, acc = [], [], 0
for t in tensors:
    n = size[t[1]] * t[2][0] * t[2][1]
    if cur and acc + n > per_file:
        files.append(cur); cur, acc = [], 0
    cur.append(t); acc += n
files.append(cur)
weight_map = {}
for i, group in enumerate(files):
    name = f"model-{i + 1:05d}-of-{len(files):05d}.safetensors"
    header, at = {"__metadata__": {"format": "pt"}}, 0
    for t, dt, shape in group:
        n = size[dt] * shape[0] * shape[1]
        header[t] = {"dtype": dt, "shape": shape, "data_offsets": [at, at + n]}
        at += n
        weight_map[t] = name
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(hf, name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for t, dt, shape in group:
            f.write(rng.bytes(size[dt] * shape[0] * shape[1]))
json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(hf, "model.safetensors.index.json"), "w"))
json.dump({"model_type": "deepseek_v3", "num_hidden_layers": layers + 1, "n_routed_experts": experts,
           "first_k_dense_replace": 1, "moe_layer_freq": 1}, open(os.path.join(hf, "config.json"), "w"))
slots = (experts + ep - 1) // ep + 1
r = random.Random(3)
rows = []
for _ in range(layers):
    ids = list(range(experts)) + [r.randrange(experts) for _ in range(ep * slots - experts)]
    r.shuffle(ids); rows.append(ids)
json.dump({"format": "eplb-placement", "version": 1, "ep_size": ep, "num_slots_per_rank": slots,
           "num_logical_experts": experts, "physical_to_logical_map": rows}, open(os.path.join(d, "p.json"), "w"))
PY
evict() { sync; for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; done; }
summary() {  # summary JOB REPORT
  "$py" - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2])); f = r["roofline"]; s = f["seconds"]
print(f"{sys.argv[1]:7} {r['seconds']['total']:6.2f} s  read {r['bytes']['read'] / 1e9:.2f} GB, "
      f"wrote {r['bytes']['written'] / 1e9:.2f} GB; roofline concurrent {s['concurrent']:.2f} s "
      f"({f['over_concurrent']:.2f}x), single stream {s['single_stream']:.2f} s "
      f"({f['over_single_stream']:.2f}x); io {f['io']['read']}/{f['io']['write']}")
PY
}
echo "HF checkpoint $(du -sb "$work/hf" | awk '{printf "%.2f", $1 / 1e9}') GB, $np processes, load: $(cut -d' ' -f1-3 /proc/loadavg)"
evict "$work"/hf/*
mpirun -np "$np" "$tool" import --hf "$work/hf" --placement "$work/p.json" --output "$work/ck" \
  --roofline --json "$work/import.json" >/dev/null
evict "$work"/hf/* "$work"/ck/*
mpirun -np "$np" "$tool" export --checkpoint "$work/ck" --hf-base "$work/hf" --output "$work/out" \
  --roofline --json "$work/export.json" >/dev/null
for f in "$work"/hf/*; do cmp -s "$f" "$work/out/$(basename "$f")" || { echo "DIFFERS: $f"; exit 1; }; done
summary import "$work/import.json"
summary export "$work/export.json"
echo "export output byte-identical to the input (cmp); load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# KEEP=1: leave the HF checkpoint and placement (for bench/hf_before_after.sh).
if [[ -n "${KEEP:-}" ]]; then rm -rf "$work/ck" "$work/out"; else rm -rf "$work"; fi
