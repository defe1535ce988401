#!/usr/bin/env bash
# Messages that name the mistake (issue 24 item 6): an unknown option or command with the
# closest one, a missing path of any option as an input error (exit 2) in our words in
# every command, and no CLI11 notation in --help or in errors.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
demo="$here/../../configs/demo"
placements="$here/../../configs/placements"

# msg CODE NAME TEXT -- args...
msg() {
  local want=$1 name=$2 text=$3; shift 4
  expect_exit "$want" "$work/$name.log" -- "$tool" "$@"
  expect_in "$work/$name.log" "eplb-rebalance: error: "
  expect_in "$work/$name.log" "$text"
  expect_not_in "$work/$name.log" "The following arguments were not expected"
  expect_not_in "$work/$name.log" "does not exist: "  # CLI11's "Directory does not exist: X"
}

# A typo is named before the required option it hides.
msg 64 nwe "unknown option '--nwe'; did you mean '--new'?" -- plan --old "$demo/old.json" --nwe "$demo/new.json"
expect_not_in "$work/nwe.log" "--new is required"
msg 64 ouput "unknown option '--ouput'; did you mean '--output'?" -- --old a --new b --input c --ouput q
msg 64 ouput-balance "unknown option '--ouput'; did you mean '--output'?" -- balance --load x --ouput q
msg 64 short "unknown option '-x' ('eplb-rebalance verify --help' lists the options)" -- verify -x
msg 64 extra "unexpected argument 'stray': plan takes options only" -- plan --old a --new b stray
msg 64 convert-extra "unexpected argument 'z': placement convert takes 2 arguments" -- \
  placement convert --to sglang x y z
msg 64 command "unknown command 'balanse'; did you mean 'balance'? the commands are" -- balanse --load x
msg 64 subcommand "'placement' needs a subcommand: convert" -- placement
msg 64 value "--ep-size: '0' is not an integer >= 1" -- plan --old a --new b --ep-size 0
msg 64 form "--load-form: 'both' is not one of auto, logical or physical" -- \
  balance --load x --num-replicas 2 --ep-size 2 --output o --load-form both
msg 64 backend "--backend: 'gpu' is not one of auto, nccl or mpi" -- --old a --new b --input c --output d --backend gpu
msg 64 no-value "--timeout needs a value" -- verify --checkpoint "$work" --timeout

# A path that does not exist: exit 2, in our words, whatever the command.
msg 2 verify-missing "--checkpoint: '$work/nope' does not exist" -- verify --checkpoint "$work/nope"
msg 2 import-missing "--hf: '$work/nope' does not exist" -- import --hf "$work/nope" --placement "$demo/old.json" --output "$work/o"
msg 2 import-missing-placement "--placement: '$work/nope.json' does not exist" -- \
  import --hf "$work" --placement "$work/nope.json" --output "$work/o"
msg 2 export-missing "--checkpoint: '$work/nope' does not exist" -- export --checkpoint "$work/nope" --hf-base "$work" --output "$work/o"
msg 2 balance-missing "--load: '$work/nope' does not exist" -- balance --load "$work/nope" --num-replicas 2 --ep-size 2 --output "$work/o"
msg 2 plan-missing "--new: '$work/nope.json' does not exist" -- plan --old "$demo/old.json" --new "$work/nope.json"
msg 2 convert-missing "IN: '$work/nope.json' does not exist" -- placement convert --to sglang "$work/nope.json" "$work/o.json"
msg 2 inspect-missing "--checkpoint: '$work/nope' does not exist" -- inspect --checkpoint "$work/nope"
echo x >"$work/file"
msg 2 not-dir "--hf: '$work/file' is not a directory" -- balance --load "$work/file" --hf "$work/file" \
  --num-replicas 2 --ep-size 2 --output "$work/o"
[[ ! -e "$work/o" && ! -e "$work/o.json" ]] && pass || fail "an output was written"

# --json -: stdout holds the report alone (plan --svg once printed "traffic picture: ..." there).
"$tool" plan --old "$demo/old.json" --new "$demo/new.json" --tensors "w:fp32:4" --svg "$work/t.svg" \
  --json - >"$work/plan.out" 2>"$work/plan.err" && pass || fail "plan --svg --json - failed"
/usr/bin/python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['command'] == 'plan'" "$work/plan.out" \
  && pass || fail "plan --json -: stdout is not the report alone"
expect_in "$work/plan.err" "traffic picture: '$work/t.svg'"

# --help in our notation: value names, (required), (env EPLB_X); none of CLI11's.
for command in run plan generate verify bench import export balance "placement convert" inspect; do
  # shellcheck disable=SC2086
  expect_exit 0 "$work/help.log" -- "$tool" $command --help
  for internal in "INT:" "TEXT:" "FLOAT:" "UINT:" "->" " OR {" "REQUIRED" "Env:" "TEXT " "INT "; do
    expect_not_in "$work/help.log" "$internal"
  done
done
expect_exit 0 "$work/bhelp.log" -- "$tool" balance --help
expect_in "$work/bhelp.log" "--load-form auto|logical|physical (default auto) (env EPLB_LOAD_FORM)"
expect_in "$work/bhelp.log" "--num-replicas N (required)"
expect_exit 0 "$work/rhelp.log" -- "$tool" run --help
expect_in "$work/rhelp.log" "--timeout SECONDS in [0.1, 604800] (default 600)"
expect_in "$work/rhelp.log" "--backend auto|nccl|mpi (default auto)"
expect_exit 0 "$work/chelp.log" -- "$tool" placement convert --help
expect_in "$work/chelp.log" "--to canonical|sglang|vllm|vllm-jsonl|vllm-ascend|trtllm (required)"
finish
