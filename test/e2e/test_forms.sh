#!/usr/bin/env bash
# Engine placement forms end to end: `placement convert` between every form, the drop
# refusal, and vLLM's --rank-mapping on a real rebalance. Errors: exit code, message, and
# nothing written.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
examples="$here/../../configs/placements"
tensors="w13:fp8_e4m3:16x8,w2:bf16:8x8"
py=/usr/bin/python3

# --- convert: every example -> every form -> canonical is the canonical example ----------
same_placement() {  # same_placement A B: equal maps, sizes and counts (json, not text)
  $py - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
keys = ("ep_size", "num_slots_per_rank", "num_logical_experts", "physical_to_logical_map")
sys.exit(0 if all(a[k] == b[k] for k in keys) else 1)
PY
}
# Every example is the same 2 MoE layers; trtllm.yaml numbers them 3 and 4, as a model with 3
# dense layers does: the model's layers are given both ways (SGLang's form has 5 rows).
for file in canonical.json sglang.json bare.json vllm-state.json vllm-mapping.jsonl vllm-ascend.json trtllm.yaml; do
  for form in canonical sglang vllm vllm-jsonl vllm-ascend trtllm; do
    out="$work/conv-$file.$form"
    expect_exit 0 "$out.log" -- "$tool" placement convert --to "$form" --ep-size 2 \
      --model-layers 3-4 "$examples/$file" "$out"
    expect_exit 0 "$out.back.log" -- "$tool" placement convert --to canonical --ep-size 2 \
      --num-logical-experts 4 --model-layers 3-4 "$out" "$out.canonical.json"
    same_placement "$out.canonical.json" "$examples/canonical.json" && pass ||
      fail "$file -> $form -> canonical differs from canonical.json"
  done
done
# TensorRT-LLM's layer numbers survive a trip through the canonical form.
expect_exit 0 "$work/t1.log" -- "$tool" placement convert --to canonical --ep-size 2 "$examples/trtllm.yaml" "$work/t.json"
expect_exit 0 "$work/t2.log" -- "$tool" placement convert --to trtllm "$work/t.json" "$work/t.yaml"
diff <(grep -v '^#' "$examples/trtllm.yaml") "$work/t.yaml" >/dev/null && pass || fail "trtllm.yaml did not round-trip"
expect_in "$work/t2.log" "note: the trtllm form does not record ep_size 2: give --ep-size 2 when reading it"
$py -c "import json,sys; assert len(json.load(open(sys.argv[1]))['physical_to_logical_map']) == 5" \
  "$work/conv-trtllm.yaml.sglang" && pass || fail "sglang form: a row per hidden layer"
# Inline JSON in, SGLang out.
expect_exit 0 "$work/inline.log" -- "$tool" placement convert --to sglang --ep-size 1 \
  --model-layers 0 '[[1,0]]' "$work/inline.json"
$py -c "import json,sys; assert json.load(open(sys.argv[1])) == {'physical_to_logical_map': [[1, 0]]}" \
  "$work/inline.json" && pass || fail "inline convert"

# --- the model's layers: needed by SGLang's and TensorRT-LLM's forms, refused otherwise ---
for form in sglang trtllm; do
  expect_exit 2 "$work/n-$form.log" -- "$tool" placement convert --to "$form" "$examples/canonical.json" "$work/n-$form.out"
  expect_in "$work/n-$form.log" "'$examples/canonical.json' does not record the model's layer numbers, and the $form form"
  expect_in "$work/n-$form.log" "give the model's layers with --model-layers (e.g. 3-60), --hf DIR or --checkpoint DIR"
  [[ ! -e "$work/n-$form.out" ]] && pass || fail "convert wrote OUT without the model's layers"
done
# The keys of TensorRT-LLM's file against --model-layers.
expect_exit 2 "$work/n-keys.log" -- "$tool" placement convert --to canonical --ep-size 2 --model-layers 0-1 \
  "$examples/trtllm.yaml" "$work/n-keys.json"
expect_in "$work/n-keys.log" "'$examples/trtllm.yaml' at /initial_global_assignments: model layers 3, 4 disagree with the model's MoE layers 0, 1 (--model-layers 0-1)"
# SGLang's 5 rows read as MoE layers 3 and 4, from the model's layers of an HF config.
mkdir -p "$work/hf"
echo '{"model_type": "deepseek_v3", "num_hidden_layers": 5, "n_routed_experts": 4, "first_k_dense_replace": 3}' >"$work/hf/config.json"
expect_exit 0 "$work/hf.log" -- "$tool" placement convert --to canonical --ep-size 2 --hf "$work/hf" \
  "$work/conv-trtllm.yaml.sglang" "$work/hf.json"
$py - "$work/hf.json" "$examples/canonical.json" <<'PY' && pass || fail "--hf: SGLang's rows per hidden layer"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["physical_to_logical_map"] == b["physical_to_logical_map"], a
assert a["model_layer_ids"] == [3, 4] and a["num_hidden_layers"] == 5, a
PY
expect_exit 64 "$work/two.log" -- "$tool" placement convert --to canonical --hf "$work/hf" --model-layers 3-4 \
  "$examples/canonical.json" "$work/two.json"
expect_in "$work/two.log" "give the model's layers once: --model-layers, --hf or --checkpoint"
expect_exit 64 "$work/spec.log" -- "$tool" placement convert --to canonical --model-layers 4-3 \
  "$examples/canonical.json" "$work/spec.json"
expect_in "$work/spec.log" "--model-layers '4-3': the range '4-3' runs backwards"

# --- empty slots: refused into a form without them, unless --fill-empty ------------------
echo '{"format": "eplb-placement", "version": 1, "ep_size": 2, "num_logical_experts": 3, "model_layer_ids": [3], "physical_to_logical_map": [[0,1, 2,-1]]}' >"$work/empty.json"
for form in sglang vllm-jsonl vllm-ascend trtllm; do
  expect_exit 2 "$work/e-$form.log" -- "$tool" placement convert --to "$form" "$work/empty.json" "$work/e-$form.out"
  expect_in "$work/e-$form.log" "'$work/empty.json' layer 0 (model layer 3), slot 3 (EP rank 1, row 1) is empty (-1), which the $form form cannot express"
  [[ ! -e "$work/e-$form.out" ]] && pass || fail "$form: an empty slot written"
done
expect_exit 0 "$work/fill.log" -- "$tool" placement convert --to trtllm --fill-empty least-replicated \
  "$work/empty.json" "$work/fill.yaml"
expect_in "$work/fill.yaml" "3: [0, 1, 2, 0]"
expect_in "$work/fill.log" "note: 1 empty slots filled (least-replicated"
expect_exit 0 "$work/keep.log" -- "$tool" placement convert --to vllm "$work/empty.json" "$work/keep.json"
expect_in "$work/keep.json" "[0,1,2,-1]"

# --- what TensorRT-LLM's own files add: ep_size, the LLM API options' load_balancer ------
printf 'enable_attention_dp: true\nmoe_config:\n  backend: WideEP\n  load_balancer:\n    num_slots: 6\n    ep_size: 2\n    initial_global_assignments: {3: [0, 1, 2, 3, 0, 1], 4: [3, 2, 1, 0, 3, 2]}\n' >"$work/llm_api.yaml"
expect_exit 0 "$work/api.log" -- "$tool" placement convert --to canonical "$work/llm_api.yaml" "$work/api.json"
same_placement "$work/api.json" "$examples/canonical.json" && pass || fail "nested moe_config.load_balancer"
sed 's/ep_size: 2/ep_size: 4/' "$work/llm_api.yaml" >"$work/llm_api4.yaml"
expect_exit 2 "$work/api4.log" -- "$tool" placement convert --to canonical --ep-size 2 "$work/llm_api4.yaml" "$work/api4.json"
expect_in "$work/api4.log" "'$work/llm_api4.yaml' at /moe_config/load_balancer/ep_size: ep_size 4 disagrees with --ep-size 2"
expect_not_in "$work/api4.log" "unknown key"

# --- --json -: stdout holds only the report ------------------------------------------------
"$tool" placement convert --to vllm --ep-size 2 --json - "$examples/canonical.json" "$work/j.json" \
  >"$work/j.out" 2>"$work/j.err" && pass || fail "convert --json - failed"
$py - "$work/j.out" <<'PY' && pass || fail "convert --json -: stdout is not the report alone"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["command"] == "placement convert" and r["result"] == "ok", r
c = r["convert"]
assert c["to"] == "vllm" and c["num_layers"] == 2 and c["ep_size"] == 2 and c["notes"], c
PY
expect_in "$work/j.err" "wrote '$work/j.json' (vllm form)"

# --- convert errors: exit code, message, OUT not written ---------------------------------
echo '{"logical_count": [[1, 2]]}' >"$work/load.json"
expect_exit 2 "$work/c1.log" -- "$tool" placement convert --to canonical "$work/load.json" "$work/c1.json"
expect_in "$work/c1.log" "'$work/load.json': not a placement in any accepted form (top-level keys: \"logical_count\"); accepted forms: canonical"
[[ ! -e "$work/c1.json" ]] && pass || fail "convert wrote OUT for an unrecognised input"
expect_exit 2 "$work/c2.log" -- "$tool" placement convert --to canonical "$examples/bare.json" "$work/c2.json"
expect_in "$work/c2.log" "the bare array form does not give ep_size: pass --ep-size"
[[ ! -e "$work/c2.json" ]] && pass || fail "convert wrote OUT without an ep_size"
echo keep >"$work/exists.json"
expect_exit 64 "$work/c3.log" -- "$tool" placement convert --to canonical "$examples/canonical.json" "$work/exists.json"
expect_in "$work/c3.log" "exists: pass --force to replace it"
[[ "$(cat "$work/exists.json")" == keep ]] && pass || fail "convert replaced OUT without --force"
expect_exit 64 "$work/c4.log" -- "$tool" placement convert --to sglangg "$examples/canonical.json" "$work/c4.json"
[[ ! -e "$work/c4.json" ]] && pass || fail "convert wrote OUT for an unknown form"

# --- the drop refusal: [0,1, 2,3] -> [0,1, 3,3] loses expert 2 ----------------------------
d="$work/drop"; mkdir -p "$d"
echo '{"format": "eplb-placement", "version": 1, "ep_size": 2, "physical_to_logical_map": [[0,1,2,3]]}' >"$d/old.json"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --output "$d/in" >/dev/null
before=$(tree_hash "$d/in")
expect_exit 2 "$d/run.log" -- mpi 2 "$tool" --old "$d/old.json" --new '[[0,1,3,3]]' --input "$d/in" --output "$d/out"
expect_in "$d/run.log" "'--new (inline JSON)' layer 0: logical expert 2 is held by '$d/old.json' but by no slot of the new placement: its weights would be lost (--allow-dropping-experts drops them)"
expect_no_output "$d/out"
[[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "drop refusal: input modified"
expect_exit 2 "$d/plan.log" -- "$tool" plan --old "$d/old.json" --new '[[0,1,0,0]]'
expect_in "$d/plan.log" "logical experts 2, 3 are held by"
expect_exit 0 "$d/run2.log" -- mpi 2 "$tool" --old "$d/old.json" --new '[[0,1,3,3]]' --allow-dropping-experts \
  --input "$d/in" --output "$d/out"
echo '[[0,1,3,3]]' >"$d/new.json"
expect_exit 0 "$d/verify.log" -- "$tool" verify --checkpoint "$d/out" --placement "$d/new.json"

# --- --rank-mapping: vLLM scale-down 3 -> 2 ranks, old rank 1 removed ----------------------
d="$work/elastic"; mkdir -p "$d"
echo '{"format": "eplb-placement", "version": 1, "ep_size": 3, "physical_to_logical_map": [[0,1, 2,3, 4,5], [5,4, 3,2, 1,0]]}' >"$d/old.json"
echo '{"physical_to_logical_map": [[0,2, 4,5], [5,4, 1,3]]}' >"$d/new-sglang.json"  # 2 new ranks
echo '{"0": 0, "1": -1, "2": 1}' >"$d/mapping.json"
# What vLLM plans: the new map padded to 3 ranks, old rank 1 empty, old rank 2 = new rank 1.
echo '{"format": "eplb-placement", "version": 1, "ep_size": 3, "num_logical_experts": 6, "physical_to_logical_map": [[0,2, -1,-1, 4,5], [5,4, -1,-1, 1,3]]}' >"$d/padded.json"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "$tensors" --seed 5 --output "$d/in" >/dev/null
mpi 1 "$tool" generate --placement "$d/padded.json" --tensors "$tensors" --seed 5 --output "$d/want" >/dev/null
before=$(tree_hash "$d/in")
expect_exit 0 "$d/run.log" -- mpi 3 "$tool" --old "$d/old.json" --new "$d/new-sglang.json" \
  --rank-mapping "$d/mapping.json" --allow-dropping-experts --input "$d/in" --output "$d/out" --backend mpi
expect_same_checkpoint "$d/out" "$d/want"
[[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "rank mapping: input modified"
expect_exit 0 "$d/plan.log" -- "$tool" plan --old "$d/old.json" --new "$d/new-sglang.json" \
  --rank-mapping '{"0": 0, "1": -1, "2": 1}' --allow-dropping-experts --json "$d/plan.json"
$py - "$d/plan.json" <<'PY' && pass || fail "rank mapping plan: removed rank 1 must only send"
import json, sys
p = json.load(open(sys.argv[1]))["plan"]
assert p["new"]["ep_size"] == 3, p["new"]
r1 = p["ranks"][1]
assert r1["experts_received"] == 0 and r1["experts_sent"] > 0 and r1["rows_empty"] == 4, r1
PY
# Without --allow-dropping-experts: experts 1 and 3 of layer 0 would be lost.
expect_exit 2 "$d/drop.log" -- "$tool" plan --old "$d/old.json" --new "$d/new-sglang.json" --rank-mapping "$d/mapping.json"
expect_in "$d/drop.log" "'$d/new-sglang.json' layer 0: logical experts 1, 3 are held by '$d/old.json' but by no slot"
# Errors: a mapping that does not fit, a malformed one; nothing written.
expect_exit 2 "$d/e1.log" -- mpi 3 "$tool" --old "$d/old.json" --new "$d/new-sglang.json" \
  --rank-mapping '{"0": 0, "1": 1}' --input "$d/in" --output "$d/out-e1"
expect_in "$d/e1.log" "--rank-mapping has 2 old ranks, but the old placement has ep_size 3"
expect_no_output "$d/out-e1"
expect_exit 2 "$d/e2.log" -- mpi 3 "$tool" --old "$d/old.json" --new "$d/new-sglang.json" \
  --rank-mapping '{"0": 0, "1": 0, "2": -1}' --input "$d/in" --output "$d/out-e2"
expect_in "$d/e2.log" "'--rank-mapping (inline JSON)' at /1: old ranks 0 and 1 both map to new rank 0"
expect_no_output "$d/out-e2"
# --ep-size and --old-ep-size that contradict each other: a usage error.
expect_exit 64 "$d/e3.log" -- "$tool" plan --old '[[0,1,2,3]]' --new '[[0,1,2,3]]' --ep-size 2 --old-ep-size 4
expect_in "$d/e3.log" "--ep-size 2 contradicts --old-ep-size 4: --ep-size sets both sizes"
# Separate sizes read a 3-rank bare old file as 3 ranks, the new one as 2.
expect_exit 0 "$d/sizes.log" -- "$tool" plan --old '[[0,1,2,3,4,5]]' --new '[[0,1,2, 3,4,5]]' --old-ep-size 3 --new-ep-size 2
expect_in "$d/sizes.log" "(ep_size 3, 2 slots per rank) -> '--new (inline JSON)' (ep_size 2, 3 slots per rank)"
finish
