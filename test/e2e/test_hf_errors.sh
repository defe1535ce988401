#!/usr/bin/env bash
# import/export refuse bad models and placements: exit 2, a message naming the file and
# the tensor (or layer, expert and ranks), no output and no staging left, input untouched.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
data="$here/../data/hf"
py=/usr/bin/python3
check="$here/hf_check.py"
d="$work"
fresh() { rm -rf "$d/hf"; cp -a "$data/$1" "$d/hf"; }
import2() { mpi 2 "$tool" import --hf "$d/hf" --output "$d/out" "$@"; }
$py "$check" placement 1 2 5 8 2 "$d/qwen.json"          # qwen3_moe: 2 MoE layers x 8 experts

# 1. An expert missing for one layer.
fresh qwen3_moe
$py "$check" drop "$d/hf" model.layers.2.mlp.experts.5.up_proj.weight
before=$(tree_hash "$d/hf")
expect_exit 2 "$d/e1.log" -- import2 --placement "$d/qwen.json"
expect_in "$d/e1.log" "'$d/hf' layer 2, expert 5: tensor 'model.layers.2.mlp.experts.5.up_proj.weight' is missing from the checkpoint"
expect_no_output "$d/out"
[[ "$(tree_hash "$d/hf")" == "$before" ]] && pass || fail "input modified by a failed import"

# 2. Experts of one layer with different shapes: names the tensor and its file.
fresh qwen3_moe
file=$($py -c "import json;print(json.load(open('$d/hf/model.safetensors.index.json'))['weight_map']['model.layers.1.mlp.experts.3.down_proj.weight'])")
$py "$check" reshape "$d/hf" model.layers.1.mlp.experts.3.down_proj.weight 64x16
expect_exit 2 "$d/e2.log" -- import2 --placement "$d/qwen.json"
expect_in "$d/e2.log" "layer 1, expert 3: 'model.layers.1.mlp.experts.3.down_proj.weight' (in '$file') is BF16 [64, 16], but"
expect_in "$d/e2.log" "the experts of a model must all have the same tensors"
expect_no_output "$d/out"

# 3. A placement whose layer count differs from the model's MoE layers.
fresh qwen3_moe
$py "$check" placement 1 2 5 8 3 "$d/three.json"
expect_exit 2 "$d/e3.log" -- import2 --placement "$d/three.json"
expect_in "$d/e3.log" "'$d/three.json' at /physical_to_logical_map: 3 layers, but the model has 2 MoE layers (1, 2; --hf '$d/hf')"
expect_no_output "$d/out"

# 4. A placement whose expert count differs from the model's.
$py "$check" placement 1 2 5 9 2 "$d/nine.json"
expect_exit 2 "$d/e4.log" -- import2 --placement "$d/nine.json"
expect_in "$d/e4.log" "has 9 logical experts, but '$d/hf' has 8 routed experts per MoE layer"
expect_no_output "$d/out"

# 5. An unknown model type asks for --experts; a bad pattern is a usage error.
sed -i 's/"model_type": "qwen3_moe"/"model_type": "some_moe"/' "$d/hf/config.json"
expect_exit 2 "$d/e5.log" -- import2 --placement "$d/qwen.json"
expect_in "$d/e5.log" "model_type \"some_moe\" is not a known MoE family"
expect_in "$d/e5.log" "--experts"
expect_no_output "$d/out"
expect_exit 64 "$d/e6.log" -- import2 --placement "$d/qwen.json" --experts 'model.layers.mlp.experts.'
expect_in "$d/e6.log" "it must contain {L}"
expect_no_output "$d/out"
# ...and with --experts the unknown model imports.
expect_exit 0 "$d/e7.log" -- import2 --placement "$d/qwen.json" --experts 'model.layers.{L}.mlp.experts.'
rm -rf "$d/out"

# 5b. --force never replaces the HF input, nor a directory that is not a checkpoint of ours.
fresh qwen3_moe
before=$(tree_hash "$d/hf")
expect_exit 64 "$d/f1.log" -- mpi 1 "$tool" import --hf "$d/hf" --placement "$d/qwen.json" --output "$d/hf" --force
expect_in "$d/f1.log" "output '$d/hf' is the Hugging Face input directory"
mkdir -p "$d/mine"; echo keep >"$d/mine/notes.txt"
expect_exit 64 "$d/f2.log" -- mpi 1 "$tool" import --hf "$d/hf" --placement "$d/qwen.json" --output "$d/mine" --force
expect_in "$d/f2.log" "is not an eplb checkpoint (no manifest.json): --force replaces only those"
[[ -f "$d/mine/notes.txt" && "$(tree_hash "$d/hf")" == "$before" ]] && pass || fail "--force destroyed a directory"

# 6. Export: replicas that disagree are refused, naming layer, expert and EP ranks. Expert
#    4 sits on EP ranks 0 and 1; rank 1's shard comes from an import of a copy of the model
#    whose expert 4 differs in one byte, so each shard is consistent in itself.
fresh qwen3_moe
cp -a "$d/hf" "$d/hf2"
$py "$check" poke "$d/hf2" model.layers.2.mlp.experts.4.up_proj.weight
cat >"$d/rep.json" <<'JSON'
{"format": "eplb-placement", "version": 1, "ep_size": 2, "num_slots_per_rank": 5,
 "num_logical_experts": 8,
 "physical_to_logical_map": [[0,1,2,3,4, 5,6,7,4,-1], [0,1,2,3,4, 5,6,7,4,-1]]}
JSON
mpi 2 "$tool" import --hf "$d/hf" --placement "$d/rep.json" --output "$d/ck" >/dev/null
mpi 1 "$tool" import --hf "$d/hf2" --placement "$d/rep.json" --output "$d/ck2" >/dev/null
cp "$d/ck2/rank-00001.h5" "$d/ck/rank-00001.h5"
# The shard differs from the manifest's entry: refused before HDF5 opens it (on whichever
# process hashes it).
expect_exit 2 "$d/e8m.log" -- mpi 2 "$tool" export --checkpoint "$d/ck" --hf-base "$d/hf" --output "$d/out"
expect_in "$d/e8m.log" "'$d/ck/rank-00001.h5': whole-file xxh3"
expect_no_output "$d/out"
cp -a "$d/ck" "$d/ck-trunc"; truncate -s 1000 "$d/ck-trunc/rank-00000.h5"
expect_exit 2 "$d/e8t.log" -- mpi 2 "$tool" export --checkpoint "$d/ck-trunc" --hf-base "$d/hf" --output "$d/out"
expect_in "$d/e8t.log" "'$d/ck-trunc/rank-00000.h5' is 1000 bytes, but the manifest says"
expect_no_output "$d/out"
# With the manifest made to agree, the replicas' checksums tell.
rehash_manifest "$d/ck" rank-00001.h5
expect_exit 2 "$d/e8.log" -- mpi 2 "$tool" export --checkpoint "$d/ck" --hf-base "$d/hf" --output "$d/out"
expect_in "$d/e8.log" "layer 1 (model layer 2), logical expert 4: replicas differ in tensor 'up_proj.weight': EP rank 0 slot 4 has xxh3"
expect_in "$d/e8.log" "EP rank 1 slot 8 has"
expect_no_output "$d/out"

# 7. Export against another base (a file of another size) is refused.
rm -rf "$d/ck"; mpi 1 "$tool" import --hf "$d/hf" --placement "$d/qwen.json" --output "$d/ck" >/dev/null
$py "$check" drop "$d/hf" model.norm.weight
file=$($py -c "import json;print(json.load(open('$data/qwen3_moe/model.safetensors.index.json'))['weight_map']['model.norm.weight'])")
expect_exit 2 "$d/e9.log" -- mpi 1 "$tool" export --checkpoint "$d/ck" --hf-base "$d/hf" --output "$d/out"
expect_in "$d/e9.log" "'$d/hf': '$file' has "
expect_in "$d/e9.log" "not the base this checkpoint was imported from"
expect_no_output "$d/out"
fresh mixtral
expect_exit 2 "$d/e9b.log" -- mpi 1 "$tool" export --checkpoint "$d/ck" --hf-base "$d/hf" --output "$d/out"
expect_in "$d/e9b.log" "'$d/hf' has no 'model-00001-of-00008.safetensors', which the checkpoint was imported from"
expect_no_output "$d/out"

# 8. Export of a checkpoint that was not imported.
$py "$here/placements.py" vector swap "$d"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "w:bf16:4x4" --output "$d/gen" >/dev/null
expect_exit 2 "$d/e10.log" -- mpi 1 "$tool" export --checkpoint "$d/gen" --hf-base "$d/hf" --output "$d/out"
expect_in "$d/e10.log" "was not made by \`import\`"
expect_no_output "$d/out"

finish
