#!/usr/bin/env bash
# The Hugging Face loop with the NCCL backend: import each reference checkpoint of
# test/data/hf, rebalance it with --backend nccl (one GPU per process), export, and compare
# every file with cmp (and every tensor with the independent reader). Where Python has
# transformers, the exported directory is also loaded with from_pretrained and its state
# dict compared with the original's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
np=$ngpu
[[ $np -ge 2 ]] || { echo "SKIP: needs 2 GPUs"; exit 77; }
data="$here/../data/hf"; check="$here/../e2e/hf_check.py"
py=${EPLB_GPU_PYTHON:-python3}
have_np=0; $py -c "import numpy" 2>/dev/null && have_np=1
have_tf=0; [[ -z ${EPLB_SKIP_TRANSFORMERS:-} ]] && $py -c "import torch, transformers" 2>/dev/null && have_tf=1
echo "numpy: $have_np, transformers: $have_tf"
for row in "deepseek_v3 3 8" "deepseek_v3_fp8 2 4" "qwen3_moe 2 8" "qwen2_moe 2 6" "olmoe 2 8" "mixtral 3 4" "gpt_oss 2 4" "gpt_oss_mxfp4 2 4" "llama4 2 4"; do
  read -r name layers experts <<<"$row"
  hf="$data/$name"; d="$work/$name"; mkdir -p "$d"
  # Placements: A on 2*np EP ranks, B on np EP ranks; both hold every expert, with replicas.
  $py - "$d" "$np" "$experts" "$layers" <<'PY'
import json, random, sys
d, np_, experts, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def make(seed, ep):
    slots = (experts + ep - 1) // ep + 1
    rng = random.Random(seed); m = []
    for _ in range(layers):
        ids = list(range(experts)) + [rng.randrange(experts) for _ in range(ep * slots - experts)]
        rng.shuffle(ids); m.append(ids)
    return {"format": "eplb-placement", "version": 1, "ep_size": ep, "num_slots_per_rank": slots,
            "num_logical_experts": experts, "physical_to_logical_map": m}
json.dump(make(1, 2 * np_), open(d + "/a.json", "w")); json.dump(make(2, np_), open(d + "/b.json", "w"))
PY
  ok=1
  timeout 60 mpirun -np "$np" "$tool" import --hf "$hf" --placement "$d/a.json" --output "$d/ck-a" >"$d/import.log" 2>&1 || { ok=0; fail "$name: import"; cat "$d/import.log" >&2; }
  timeout 60 mpirun -np "$np" "$tool" --old "$d/a.json" --new "$d/b.json" --input "$d/ck-a" --output "$d/ck-b" \
    --backend nccl >"$d/run.log" 2>&1 || { ok=0; fail "$name: nccl run"; cat "$d/run.log" >&2; }
  grep -q "backend: nccl" "$d/run.log" || { ok=0; fail "$name: run did not use NCCL"; }
  timeout 60 mpirun -np "$np" "$tool" export --checkpoint "$d/ck-b" --hf-base "$hf" --output "$d/out" >"$d/export.log" 2>&1 || { ok=0; fail "$name: export"; cat "$d/export.log" >&2; }
  for f in "$hf"/*; do
    cmp -s "$f" "$d/out/$(basename "$f")" || { ok=0; fail "$name: $(basename "$f") differs after import, nccl run, export"; }
  done
  if [[ $have_np -eq 1 ]]; then
    $py "$check" compare "$hf" "$d/out" >"$d/compare.log" 2>&1 && grep -q ", 0 differences" "$d/compare.log" || { ok=0; fail "$name: compare"; cat "$d/compare.log" >&2; }
  fi
  if [[ $have_tf -eq 1 ]]; then
    $py - "$hf" "$d/out" >"$d/load.log" 2>&1 <<'PY' || { ok=0; fail "$name: loading with safetensors/transformers"; cat "$d/load.log" >&2; }
import glob, os, sys, torch, transformers
from safetensors import safe_open
a, b = sys.argv[1], sys.argv[2]
raw = lambda t: t.detach().contiguous().reshape(-1).view(torch.uint8)
n = 0
for f in sorted(glob.glob(a + "/*.safetensors")):
    with safe_open(f, "pt") as x, safe_open(os.path.join(b, os.path.basename(f)), "pt") as y:
        assert set(x.keys()) == set(y.keys()), f"{f}: tensor names differ"
        for k in x.keys():
            s, t = x.get_tensor(k), y.get_tensor(k)
            assert s.dtype == t.dtype and s.shape == t.shape and torch.equal(raw(s), raw(t)), k
            n += 1
msg = f"safetensors: {n} tensors equal"
try:
    ma = transformers.AutoModelForCausalLM.from_pretrained(a)
except Exception as e:  # the hand-written FP8 release: transformers cannot load the original either
    print(f"{msg}; transformers cannot load the original either ({type(e).__name__}), skipped")
    sys.exit(0)
mb = transformers.AutoModelForCausalLM.from_pretrained(b)
sa, sb = ma.state_dict(), mb.state_dict()
assert sa.keys() == sb.keys(), "state dict keys differ"
bad = [k for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(raw(sa[k]), raw(sb[k]))]
assert not bad, f"tensors differ: {bad[:5]}"
print(f"{msg}; transformers: loaded, {len(sa)} tensors equal")
PY
  fi
  [[ $ok -eq 1 ]] && pass && echo "$name: import, nccl run on $np GPUs, export: identical$([[ $have_tf -eq 1 ]] && echo ", $(tail -1 "$d/load.log")")"
done
finish
