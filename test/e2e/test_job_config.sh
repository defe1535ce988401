#!/usr/bin/env bash
# Job configuration: options from EPLB_* variables and a --config TOML file, with the
# command line first, then the environment, then the file; the report says where each
# value came from; --help names the variables; a missing --old is an input error (2).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
demo="$here/../../configs/demo"
"$tool" generate --placement "$demo/old.json" --tensors "w13:bf16:64x32" --output "$work/in" >/dev/null
source_of() {  # source_of REPORT OPTION -> "source=value"
  /usr/bin/python3 -c 'import json,sys; o = json.load(open(sys.argv[1]))["options"][sys.argv[2]]; print(o["source"] + "=" + o["value"])' "$1" "$2"
}
expect_eq() { [[ "$1" == "$2" ]] && pass || fail "got '$1', expected '$2'"; }

# The short form with input and output from the environment, as a job script sets them.
expect_exit 0 "$work/env.log" -- mpi 2 env EPLB_INPUT="$work/in" EPLB_OUTPUT="$work/out-env" \
  EPLB_JSON="$work/env.json" EPLB_BACKEND=mpi "$tool" --old "$demo/old.json" --new "$demo/new.json"
[[ -f "$work/out-env/manifest.json" ]] && pass || fail "EPLB_OUTPUT not used"
expect_eq "$(source_of "$work/env.json" --input)" "environment EPLB_INPUT=$work/in"
expect_eq "$(source_of "$work/env.json" --old)" "command line=$demo/old.json"
expect_eq "$(source_of "$work/env.json" --timeout)" "default=600"

# A config file: flat keys for the command that runs, [section] keys per command (others'
# sections are skipped); the environment beats the file, the command line beats both.
cat > "$work/job.toml" <<TOML
input = "$work/in"
output = "$work/out-file"
backend = "mpi"
old = "$demo/old.json"
new = "$demo/new.json"
[run]
timeout = 30
[verify]
checkpoint = "$work/nowhere"
TOML
expect_exit 0 "$work/cfg.log" -- mpi 2 env EPLB_OUTPUT="$work/out-env2" EPLB_TIMEOUT=45 \
  "$tool" --config "$work/job.toml" --timeout 50 --json "$work/cfg.json"
[[ -f "$work/out-env2/manifest.json" && ! -e "$work/out-file" ]] && pass || fail "environment did not beat the file"
expect_eq "$(source_of "$work/cfg.json" --output)" "environment EPLB_OUTPUT=$work/out-env2"
expect_eq "$(source_of "$work/cfg.json" --input)" "config $work/job.toml=$work/in"
expect_eq "$(source_of "$work/cfg.json" --new)" "config $work/job.toml=$demo/new.json"
expect_eq "$(source_of "$work/cfg.json" --timeout)" "command line=50"
# EPLB_CONFIG names the file; the file alone runs the job.
expect_exit 0 "$work/cfg2.log" -- mpi 2 env EPLB_CONFIG="$work/job.toml" "$tool" run --json "$work/cfg2.json"
[[ -f "$work/out-file/manifest.json" ]] && pass || fail "EPLB_CONFIG not used"
expect_eq "$(source_of "$work/cfg2.json" --timeout)" "config $work/job.toml=30"
# A key no command has is a usage error naming it and the closest one; a missing config
# file an input error.
printf 'inptu = "x"\n' > "$work/typo.toml"
expect_exit 64 "$work/typo.log" -- "$tool" --config "$work/typo.toml" --old a --new b
expect_in "$work/typo.log" "'$work/typo.toml' line 1: 'inptu' is not an option of any command; did you mean 'input'?"
printf '[rnu]\ntimeout = 3\n' > "$work/section.toml"
expect_exit 64 "$work/section.log" -- "$tool" --config "$work/section.toml" --old a --new b
expect_in "$work/section.log" "'$work/section.toml' line 1: [rnu] is not a command; did you mean [run]?"
printf '[run]\ntimout = 3\n' > "$work/key.toml"
expect_exit 64 "$work/key.log" -- "$tool" --config "$work/key.toml" --old a --new b
expect_in "$work/key.log" "'$work/key.toml' line 2: 'timout' is not an option of [run]; did you mean 'timeout'?"
expect_exit 2 "$work/nocfg.log" -- "$tool" --config "$work/none.toml" --old a --new b
expect_in "$work/nocfg.log" "none.toml': config file does not exist"

# Real TOML: malformed text is an input error with its line and column; a value of the
# wrong type, an array for one value and a duplicate key are refused; nothing runs.
bad_toml() {  # bad_toml NAME CODE TEXT EXPECTED
  printf '%b' "$3" > "$work/$1.toml"
  expect_exit "$2" "$work/$1.log" -- "$tool" --config "$work/$1.toml" --old "$demo/old.json" \
    --new "$demo/new.json" --input "$work/in" --output "$work/out-$1"
  expect_in "$work/$1.log" "$4"
  expect_no_output "$work/out-$1"
}
bad_toml unterminated 2 'input = "ckpt\n' "'$work/unterminated.toml' line 1, column 14: malformed TOML"
bad_toml section 2 '[run\n' "'$work/section.toml' line 1, column 5: malformed TOML"
bad_toml duplicate 2 'backend = "mpi"\nbackend = "mpi"\n' "'$work/duplicate.toml' line 2"
bad_toml array 64 'input = ["a", "b"]\n' "'$work/array.toml' line 1: 'input' is an array, but --input takes one value"
bad_toml type 64 'timeout = "soon"\n' "'$work/type.toml' line 1: 'timeout' is a string, but --timeout takes a number of seconds"
bad_toml flag 64 'force = 1\n' "'$work/flag.toml' line 1: 'force' is an integer, but --force takes true or false"
# A flag and a size as TOML types.
printf 'force = true\nmax_staging_bytes = "64MiB"\nbackend = "mpi"\n' > "$work/types.toml"
expect_exit 0 "$work/types.log" -- mpi 1 "$tool" --config "$work/types.toml" --old "$demo/old.json" \
  --new "$demo/new.json" --input "$work/in" --output "$work/out-file" --json "$work/types.json"
expect_eq "$(source_of "$work/types.json" --max-staging-bytes)" "config $work/types.toml=67108864"
expect_eq "$(source_of "$work/types.json" --force)" "config $work/types.toml=true"

# `placement convert` reads the environment and [placement.convert] too.
printf '[placement.convert]\nto = "vllm"\nep_size = 2\n' > "$work/convert.toml"
expect_exit 0 "$work/convert.log" -- env EPLB_FORCE=1 "$tool" --config "$work/convert.toml" placement convert \
  --json "$work/convert.json" "$here/../../configs/placements/sglang.json" "$work/conv.json"
expect_in "$work/conv.json" "num_moe_layers"
expect_eq "$(source_of "$work/convert.json" --to)" "config $work/convert.toml=vllm"
expect_eq "$(source_of "$work/convert.json" --force)" "environment EPLB_FORCE=1"

# --help names each option's variable.
expect_exit 0 "$work/help.log" -- "$tool" run --help
for v in EPLB_OLD EPLB_NEW EPLB_INPUT EPLB_OUTPUT EPLB_BACKEND EPLB_TIMEOUT EPLB_MAX_STAGING_BYTES EPLB_JSON; do
  expect_in "$work/help.log" "$v"
done

# A missing --old file is an input error (2) with the file named, not CLI11's 64.
expect_exit 2 "$work/old.log" -- mpi 2 "$tool" --old "$work/nope.json" --new "$demo/new.json" \
  --input "$work/in" --output "$work/out-x"
expect_in "$work/old.log" "--old: '$work/nope.json' does not exist"
expect_no_output "$work/out-x"
expect_exit 2 "$work/old2.log" -- "$tool" plan --old "$work/nope.json" --new "$demo/new.json"
finish
