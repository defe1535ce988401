#!/usr/bin/env bash
# import / export of a synthetic DeepSeek-V3-like Hugging Face checkpoint (FP8 experts with
# F32 block scales, several safetensors files) against the storage roofline measured in the
# same run: dd (direct I/O, 1 MiB blocks) writing and reading the same number of bytes.
#   usage: bench/hf_disk.sh BIN_DIR WORK_DIR [NP] [EXPERTS] [MOE_LAYERS]
# Defaults: 2 processes, 16 experts x 2 MoE layers of 44 MiB experts: a 1.5 GB checkpoint.
set -euo pipefail
bin=$(realpath "$1"); work=$(realpath -m "$2"); np=${3:-2}; experts=${4:-16}; layers=${5:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tool="$bin/eplb-rebalance"
rm -rf "$work"; mkdir -p "$work"
/usr/bin/python3 - "$work" "$experts" "$layers" "$np" <<'PY'
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
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
evict() { sync; for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; done; }
hf_bytes=$(du -sb "$work/hf" | cut -f1)
evict "$work"/hf/*
t0=$(now); mpirun -np "$np" "$tool" import --hf "$work/hf" --placement "$work/p.json" --output "$work/ck" | tail -1; t1=$(now)
ck_bytes=$(du -sb "$work/ck" | cut -f1)
evict "$work"/hf/* "$work"/ck/*
t2=$(now); mpirun -np "$np" "$tool" export --checkpoint "$work/ck" --hf-base "$work/hf" --output "$work/out" | tail -1; t3=$(now)
for f in "$work"/hf/*; do cmp -s "$f" "$work/out/$(basename "$f")" || { echo "DIFFERS: $f"; exit 1; }; done
rm -rf "$work/out" "$work/ck"
mib=$((hf_bytes / 1048576))
t4=$(now); dd if=/dev/zero of="$work/seq" bs=1M count="$mib" oflag=direct status=none; sync; t5=$(now)
dd if="$work/seq" of=/dev/null bs=1M iflag=direct status=none; t6=$(now)
w=$(elapsed "$t4" "$t5"); r=$(elapsed "$t5" "$t6")
# Rooflines: import reads the expert bytes of the HF files and writes the shards; export
# reads the shards' rows and the non-expert bytes and writes the whole HF size.
awk -v hb="$hf_bytes" -v cb="$ck_bytes" -v w="$w" -v r="$r" -v ti="$(elapsed "$t0" "$t1")" \
    -v te="$(elapsed "$t2" "$t3")" -v mib="$mib" 'BEGIN {
  wbw = mib * 1048576 / w; rbw = mib * 1048576 / r
  ri = hb / rbw + cb / wbw; re = hb / rbw + hb / wbw
  printf "HF checkpoint %.2f GB, shards %.2f GB; dd direct: write %.0f MB/s, read %.0f MB/s\n", hb/1e9, cb/1e9, wbw/1e6, rbw/1e6
  printf "import  %.2f s  roofline %.2f s  ratio %.2f\n", ti, ri, ti / ri
  printf "export  %.2f s  roofline %.2f s  ratio %.2f (output byte-identical: cmp)\n", te, re, te / re }'
rm -rf "$work"
