#!/usr/bin/env bash
# Hugging Face checkpoints in and out, on the reference checkpoints of test/data/hf (made by
# transformers' save_pretrained and the safetensors library: make_test_models.py). For each
# model: import for a placement with replicas, check every slot against the HF bytes with an
# independent reader, rebalance under mpirun to another placement (np 1/2/4), export, and
# check every tensor byte for byte and every file with cmp.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
data="$here/../data/hf"
py=/usr/bin/python3
check="$here/hf_check.py"

# Kimi-K2 ships DeepSeek-V3 tensors under model_type "kimi_k2".
cp -a "$data/deepseek_v3_fp8" "$work/hf-kimi"
sed -i 's/"model_type": "deepseek_v3"/"model_type": "kimi_k2"/' "$work/hf-kimi/config.json"
grep -q '"kimi_k2"' "$work/hf-kimi/config.json" && pass || fail "kimi config not made"

# name  directory  MoE layers  experts  (the counts come from the configs make_test_models.py wrote)
models=(
  "deepseek_v3     $data/deepseek_v3      3 8"
  "deepseek_v3_fp8 $data/deepseek_v3_fp8  2 4"
  "kimi_k2_fp8     $work/hf-kimi          2 4"
  "qwen3_moe       $data/qwen3_moe        2 8"
  "qwen2_moe       $data/qwen2_moe        2 6"
  "olmoe           $data/olmoe            2 8"
  "mixtral         $data/mixtral          3 4"
  "gpt_oss         $data/gpt_oss          2 4"
  "gpt_oss_mxfp4   $data/gpt_oss_mxfp4    2 4"
  "llama4          $data/llama4           2 4"
)
nps=(1 2 4)
i=0
for row in "${models[@]}"; do
  read -r name hf layers experts <<<"$row"
  d="$work/$name"; mkdir -p "$d"
  np=${nps[$((i % 3))]}; np2=${nps[$(((i + 1) % 3))]}; i=$((i + 1))
  before=$(tree_hash "$hf")
  # Placement A: 2 EP ranks with room for replicas; B: 4 EP ranks, other replicas.
  $py "$check" placement $((i * 7)) 2 $(((experts + 1) / 2 + 1)) "$experts" "$layers" "$d/a.json"
  $py "$check" placement $((i * 7 + 1)) 4 $(((experts + 3) / 4 + 1)) "$experts" "$layers" "$d/b.json"
  expect_exit 0 "$d/import.log" -- mpi "$np2" "$tool" import --hf "$hf" --placement "$d/a.json" --output "$d/ck-a"
  expect_exit 0 "$d/check.log" -- $py "$check" check-import "$d/ck-a" "$hf"
  expect_in "$d/check.log" ", 0 wrong"
  expect_exit 0 "$d/verify.log" -- mpi 1 "$tool" verify --checkpoint "$d/ck-a"
  expect_exit 0 "$d/run.log" -- mpi "$np" "$tool" --old "$d/a.json" --new "$d/b.json" --input "$d/ck-a" --output "$d/ck-b"
  expect_exit 0 "$d/check-b.log" -- $py "$check" check-import "$d/ck-b" "$hf"
  expect_exit 0 "$d/export.log" -- mpi "$np2" "$tool" export --checkpoint "$d/ck-b" --hf-base "$hf" --output "$d/out"
  expect_exit 0 "$d/compare.log" -- $py "$check" compare "$hf" "$d/out"
  expect_in "$d/compare.log" ", 0 differences"
  # Every file byte-identical (the safetensors files, config.json, the index, ...).
  for f in "$hf"/*; do
    cmp -s "$f" "$d/out/$(basename "$f")" && pass || fail "$name: $(basename "$f") differs after the round trip"
  done
  [[ $(ls "$hf" | wc -l) -eq $(ls "$d/out" | wc -l) ]] && pass || fail "$name: file count differs"
  [[ "$(tree_hash "$hf")" == "$before" ]] && pass || fail "$name: input modified"
  echo "$name: import np $np2, run np $np, export np $np2: $(tail -1 "$d/compare.log")"
done

# --experts: a pattern finds the same experts as the family did, and round-trips too.
d="$work/pattern"; mkdir -p "$d"
$py "$check" placement 3 2 3 4 3 "$d/a.json"
expect_exit 0 "$d/import.log" -- mpi 2 "$tool" import --hf "$data/mixtral" --placement "$d/a.json" \
  --experts 'model.layers.{L}.block_sparse_moe.experts.' --output "$d/ck"
expect_exit 0 "$d/check.log" -- $py "$check" check-import "$d/ck" "$data/mixtral"
expect_exit 0 "$d/export.log" -- mpi 1 "$tool" export --checkpoint "$d/ck" --hf-base "$data/mixtral" --output "$d/out"
expect_exit 0 "$d/compare.log" -- $py "$check" compare "$data/mixtral" "$d/out"

# The round trip is not vacuous: a checkpoint whose expert rows were swapped (with their
# checksums) exports different bytes, and the independent reader sees it.
d="$work/swapped"; mkdir -p "$d"
$py "$check" placement 5 2 3 4 3 "$d/a.json"
mpi 1 "$tool" import --hf "$data/mixtral" --placement "$d/a.json" --output "$d/ck" >/dev/null
$py - "$d/ck" <<'PY'
import json, sys, h5py
ck = sys.argv[1]
m = json.load(open(ck + "/manifest.json"))
with h5py.File(ck + "/rank-00000.h5", "r+") as f:
    ids = f["layer_00000/logical_ids"][...]
    a, b = 0, 1
    assert ids[a] != ids[b] and ids[a] >= 0 and ids[b] >= 0
    ids[a], ids[b] = ids[b], ids[a]
    f["layer_00000/logical_ids"][...] = ids
m["placement"]["physical_to_logical_map"][0][0:2] = [int(ids[0]), int(ids[1])]
# Relabel every other slot of those two experts too, so replicas stay consistent.
json.dump(m, open(ck + "/manifest.json", "w"))
PY
rehash_manifest "$d/ck" rank-00000.h5  # else the manifest check refuses the changed shard
mpi 1 "$tool" export --checkpoint "$d/ck" --hf-base "$data/mixtral" --output "$d/out" >"$d/export.log" 2>&1 || true
if [[ -d "$d/out" ]]; then
  $py "$check" compare "$data/mixtral" "$d/out" >"$d/compare.log" 2>&1 && fail "swapped experts exported identical bytes" || pass
else
  expect_in "$d/export.log" "replicas differ"
fi

finish
