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
# A key no command has is a usage error naming it; a missing config file an input error.
printf 'inptu = "x"\n' > "$work/typo.toml"
expect_exit 64 "$work/typo.log" -- "$tool" --config "$work/typo.toml" --old a --new b
expect_in "$work/typo.log" "'inptu' is not an option of any subcommand"
expect_exit 2 "$work/nocfg.log" -- "$tool" --config "$work/none.toml" --old a --new b
expect_in "$work/nocfg.log" "none.toml': config file does not exist"

# --help names each option's variable.
expect_exit 0 "$work/help.log" -- "$tool" run --help
for v in EPLB_OLD EPLB_NEW EPLB_INPUT EPLB_OUTPUT EPLB_BACKEND EPLB_TIMEOUT EPLB_MAX_STAGING_BYTES EPLB_JSON; do
  expect_in "$work/help.log" "$v"
done

# A missing --old file is an input error (2) with the file named, not CLI11's 64.
expect_exit 2 "$work/old.log" -- mpi 2 "$tool" --old "$work/nope.json" --new "$demo/new.json" \
  --input "$work/in" --output "$work/out-x"
expect_in "$work/old.log" "nope.json': placement file does not exist"
expect_no_output "$work/out-x"
expect_exit 2 "$work/old2.log" -- "$tool" plan --old "$work/nope.json" --new "$demo/new.json"
finish
