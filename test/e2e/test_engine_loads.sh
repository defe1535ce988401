#!/usr/bin/env bash
# The engines' own files end to end (issue 24): `balance` reads every engine's load
# statistics as it dumps them (test/data/loads/README.md names each writer) and makes the
# same placement from each, numbered by the model's layers; SGLang's .pt through the shipped
# script; `inspect` says what a placement for a model must have; --json - keeps stdout for
# the report alone.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
loads="$here/../data/loads"
py=/usr/bin/python3
common=(--num-replicas 6 --ep-size 2)

# A DeepSeek-like model: 5 hidden layers, MoE layers 3 and 4 of 4 routed experts.
mkdir -p "$work/model"
echo '{"model_type": "deepseek_v3", "num_hidden_layers": 5, "n_routed_experts": 4, "first_k_dense_replace": 3}' \
  >"$work/model/config.json"

# --- the same placement from every engine's statistics -------------------------------------
expect_exit 0 "$work/vllm.log" -- "$tool" balance --load "$loads/vllm/eplb-load-stats.jsonl" "${common[@]}" \
  --hf "$work/model" --output "$work/vllm.json"
expect_in "$work/vllm.log" "vLLM load statistics of 'deepseek-like-test', 2 steps folded through their physical_to_logical maps"
expect_exit 0 "$work/sglang.log" -- "$tool" balance --load "$loads/sglang/expert_distribution_recorder.json" \
  "${common[@]}" --hf "$work/model" --output "$work/sglang.json"
expect_exit 0 "$work/trtllm.log" -- "$tool" balance --load "$loads/trtllm" "${common[@]}" --output "$work/trtllm.json"
expect_in "$work/trtllm.log" "TensorRT-LLM expert statistic, 2 ranks, iterations 100 to 101"
expect_exit 0 "$work/spec.log" -- "$tool" balance --load "$loads/sglang/expert_distribution_recorder.json" \
  "${common[@]}" --model-layers 3-4 --output "$work/spec.json"
$py - "$work"/{vllm,sglang,trtllm,spec}.json <<'PY' && pass || fail "the engines' loads give different placements"
import json, sys
ps = [json.load(open(p)) for p in sys.argv[1:]]
for p in ps:
    assert p["physical_to_logical_map"] == ps[0]["physical_to_logical_map"], (p, ps[0])
    assert p["model_layer_ids"] == [3, 4], p
assert ps[0]["num_hidden_layers"] == 5 and ps[1]["num_hidden_layers"] == 5, ps
PY
# What TensorRT-LLM reads back: its keys are the model's layer numbers.
expect_exit 0 "$work/conv.log" -- "$tool" placement convert --to trtllm "$work/trtllm.json" "$work/t.yaml"
expect_in "$work/t.yaml" "  3: ["
expect_in "$work/t.yaml" "  4: ["
# SGLang's map gets a row per hidden layer back.
expect_exit 0 "$work/conv2.log" -- "$tool" placement convert --to sglang "$work/sglang.json" "$work/s.json"
$py -c "import json,sys; assert len(json.load(open(sys.argv[1]))['physical_to_logical_map']) == 5" "$work/s.json" \
  && pass || fail "sglang: 5 rows"

# --- SGLang: dense rows refused without the model; the .pt through the script --------------
expect_exit 2 "$work/nomodel.log" -- "$tool" balance --load "$loads/sglang/expert_distribution_recorder.json" \
  "${common[@]}" --output "$work/nomodel.json"
expect_in "$work/nomodel.log" "rows 0-2 have no load at all: SGLang's recorder writes a row per hidden layer"
[[ ! -e "$work/nomodel.json" ]] && pass || fail "balance wrote a placement from SGLang rows without the model"
if $py -c "import torch" 2>/dev/null; then
  expect_exit 0 "$work/pt.log" -- $py "$here/../../scripts/sglang-loads-to-json.py" \
    "$loads/sglang/expert_distribution_recorder_1765100000.0.pt" "$work/pt.json"
  cmp -s "$work/pt.json" "$loads/sglang/expert_distribution_recorder.json" && pass || fail "the .pt converts differently"
  $py -c "import torch; torch.save({'records': [], 'last_physical_to_logical_map': torch.zeros(1, 2)}, '$work/per_token.pt')"
  expect_exit 2 "$work/pertoken.log" -- $py "$here/../../scripts/sglang-loads-to-json.py" "$work/per_token.pt" "$work/x.json"
  expect_in "$work/pertoken.log" "this is a per_token dump (records, last_physical_to_logical_map): run SGLang's recorder in stat mode"
  echo '{"records": []}' >"$work/not.pt"
  expect_exit 2 "$work/notpt.log" -- $py "$here/../../scripts/sglang-loads-to-json.py" "$work/not.pt" "$work/x.json"
  expect_in "$work/notpt.log" "sglang-loads-to-json: error: '$work/not.pt' is not a torch file torch.load can read"
else
  echo "note: torch missing, the .pt conversion is not checked here"
fi

# --- vLLM and TensorRT-LLM files that are not as written -----------------------------------
sed '1d' "$loads/vllm/eplb-load-stats.jsonl" >"$work/nometa.jsonl"
expect_exit 2 "$work/nometa.log" -- "$tool" balance --load "$work/nometa.jsonl" "${common[@]}" --output "$work/o.json"
expect_in "$work/nometa.log" "'$work/nometa.jsonl:1': an eplb_load_stats record before the eplb_load_meta record"
cp -r "$loads/trtllm" "$work/trt"; mv "$work/trt/rank1.safetensors" "$work/trt/rank3.safetensors"
expect_exit 2 "$work/trt.log" -- "$tool" balance --load "$work/trt" "${common[@]}" --output "$work/o.json"
expect_in "$work/trt.log" "'$work/trt': rank files are not rank0 to rank1 (2 files)"
expect_exit 2 "$work/trtkeys.log" -- "$tool" balance --load "$loads/trtllm" "${common[@]}" --model-layers 1-2 \
  --output "$work/o.json"
expect_in "$work/trtkeys.log" "model layers 3, 4 disagree with the model's MoE layers 1, 2 (--model-layers 1-2)"
[[ ! -e "$work/o.json" ]] && pass || fail "balance wrote a placement from bad statistics"

# A checkpoint that does not record the model's layers cannot give them.
echo '{"format": "eplb-placement", "version": 1, "ep_size": 1, "physical_to_logical_map": [[0,1,2,3], [0,1,2,3]]}' \
  >"$work/gen.json"
"$tool" generate --placement "$work/gen.json" --tensors "w:fp32:4" --output "$work/gen" >/dev/null
expect_exit 2 "$work/gen.log" -- "$tool" balance --load "$loads/trtllm" "${common[@]}" --checkpoint "$work/gen" \
  --output "$work/o.json"
expect_in "$work/gen.log" "'$work/gen' does not record the model's layers (only a checkpoint made by import does): give --model-layers or --hf"

# --- --json -: the report alone on stdout, the rest on stderr ------------------------------
"$tool" balance --load "$loads/trtllm" "${common[@]}" --output "$work/j.json" --json - \
  >"$work/j.out" 2>"$work/j.err" && pass || fail "balance --json - failed"
$py - "$work/j.out" <<'PY' && pass || fail "balance --json -: stdout is not the report alone"
import json, sys
r = json.load(open(sys.argv[1]))
b = r["balance"]
assert r["command"] == "balance" and r["result"] == "ok", r
assert b["load"]["num_layers"] == 2 and b["model_layer_ids"] == [3, 4], b
assert b["config"]["ep_size"] == 2 and b["written"] == "reference", b
PY
expect_in "$work/j.err" "balance: '$loads/trtllm' (TensorRT-LLM expert statistic"
# A failure writes its report too.
expect_exit 2 "$work/jf.log" -- "$tool" balance --load "$work/nometa.jsonl" "${common[@]}" --output "$work/o.json" \
  --json "$work/jf.json"
$py -c "import json,sys; r = json.load(open(sys.argv[1])); assert r['exit_code'] == 2 and r['error']['kind'] == 'input'" \
  "$work/jf.json" && pass || fail "balance failure report"

# --- inspect: what a placement for the model must have --------------------------------------
hf="$here/../data/hf/deepseek_v3"
expect_exit 0 "$work/i1.log" -- "$tool" inspect --hf "$hf" --json "$work/i1.json"
expect_in "$work/i1.log" "model '$hf' (deepseek_v3):"
expect_in "$work/i1.log" "routed experts"
expect_in "$work/i1.log" "bytes:"
$py - "$work/i1.json" "$hf/config.json" <<'PY' && pass || fail "inspect --hf report"
import json, sys
r, c = (json.load(open(p)) for p in sys.argv[1:])
h = r["inspect"]["hf"]
dense = c.get("first_k_dense_replace", 0)
assert h["num_hidden_layers"] == c["num_hidden_layers"], h
assert h["moe_layers"] == list(range(dense, c["num_hidden_layers"])), h
assert h["num_logical_experts"] == c["n_routed_experts"], h
assert h["bytes_per_expert"] == sum(t["bytes_per_expert"] for t in h["tensors"]) > 0, h
assert h["bytes_per_layer"] == h["bytes_per_expert"] * h["num_logical_experts"], h
PY
expect_exit 0 "$work/i2.log" -- "$tool" inspect --placement "$work/trtllm.json"
expect_in "$work/i2.log" "placement '$work/trtllm.json': 2 layers, ep_size 2, 3 slots per rank (6 per layer), 4 logical experts; model layers 3, 4"
expect_exit 64 "$work/i3.log" -- "$tool" inspect
expect_in "$work/i3.log" "inspect: give --hf DIR, --checkpoint DIR or --placement P"
expect_exit 2 "$work/i4.log" -- "$tool" inspect --hf "$work/nope"
expect_in "$work/i4.log" "--hf: '$work/nope' does not exist"
$py - "$work/i1.json" >"$work/full.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["inspect"]["hf"]
n = h["num_logical_experts"]
print(json.dumps({"format": "eplb-placement", "version": 1, "ep_size": 1,
                  "physical_to_logical_map": [list(range(n))] * h["num_moe_layers"]}))
PY
expect_exit 0 "$work/imp.log" -- mpi 1 "$tool" import --hf "$hf" --placement "$work/full.json" --output "$work/ckpt"
expect_exit 0 "$work/i5.log" -- "$tool" inspect --checkpoint "$work/ckpt" --json "$work/i5.json"
expect_in "$work/i5.log" "written for a placement of"
$py -c "import json,sys; c = json.load(open(sys.argv[1]))['inspect']['checkpoint']; assert c['placement']['ep_size'] == 1 and c['moe_layers'], c" \
  "$work/i5.json" && pass || fail "inspect --checkpoint report"
finish
