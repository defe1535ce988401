#!/usr/bin/env bash
# Several hosts on one machine (network namespaces, test/e2e/hosts.sh): Open MPI over TCP
# between them, a private /tmp on each, the checkpoint on a shared path.
# - A rebalance over three hosts gives the same checkpoint as on one host, with the ranks
#   placed round-robin (--map-by node) and in uneven blocks (3, 2, 1 per host); the report
#   says which host each rank ran on, and the bytes crossing nodes are those `plan` gives
#   for that layout (--rank-hosts), which differ from a contiguous-block assumption.
# - An output directory private to each host fails before anything moves, naming the
#   directory, rank 0's host and this host, exit 3; nothing committed, no check file left
#   (run and generate).
# Skipped (77) where network namespaces cannot be made.
export TMPDIR="${EPLB_TEST_SHARED_DIR:-/var/tmp}"  # shared by the hosts: not /tmp
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$here/hosts.sh"
# Each namespace host mounts a private tmpfs on /tmp: a tool built under /tmp is not there.
case "$(realpath "$tool")" in /tmp/*) echo "SKIP: the tool is under /tmp, which every test host mounts privately"; exit 77 ;; esac
make_hosts 3
spec="w13:bf16:32x16,w2:bf16:16x16"
d="$work/ckpt"; mkdir -p "$d"
python3 "$here/placements.py" random 11 6 4 16 3 "$d"
mpi 1 "$tool" generate --placement "$d/old.json" --tensors "$spec" --seed 5 --output "$d/in" >/dev/null
before=$(tree_hash "$d/in")
expect_exit 0 "$d/single.log" -- mpi 6 "$tool" --old "$d/old.json" --new "$d/new.json" \
  --input "$d/in" --output "$d/single" --backend mpi

check_layout() {  # check_layout NAME HOSTS(comma-separated, per rank) MPIRUN-OPTIONS...
  local name=$1 rank_hosts=$2; shift 2
  expect_exit 0 "$d/$name.log" -- on_hosts 6 "$@" -- "$tool" --old "$d/old.json" \
    --new "$d/new.json" --input "$d/in" --output "$d/$name" --backend mpi -v --json "$d/$name.json"
  expect_same_checkpoint "$d/$name" "$d/single"
  cmp -s "$d/$name/manifest.json" "$d/single/manifest.json" && pass ||
    fail "$name: manifest differs from the single-host run's"
  expect_in "$d/$name.log" "nodes from the hosts MPI reports: 3 nodes (0 h0, 1 h1, 2 h2)"
  # What `plan` says for the same layout, given by hand.
  expect_exit 0 "$d/$name-plan.json" -- "$tool" plan --old "$d/old.json" --new "$d/new.json" \
    --input "$d/in" --rank-hosts "$rank_hosts" --json -
  expect_exit 0 "$d/$name-blocks.json" -- "$tool" plan --old "$d/old.json" --new "$d/new.json" \
    --input "$d/in" --ranks-per-node 2 --json -
  /usr/bin/python3 - "$d/$name.json" "$d/$name-plan.json" "$d/$name-blocks.json" "$rank_hosts" <<'PY' &&
import json, sys
run, plan, blocks = (json.load(open(p)) for p in sys.argv[1:4])
hosts = sys.argv[4].split(",")
assert run["result"] == "ok", run
assert run["topology"]["source"] == "mpi", run["topology"]
assert run["topology"]["process_hosts"] == hosts, (run["topology"], hosts)
names = list(dict.fromkeys(hosts))
assert run["topology"]["ep_rank_nodes"] == [names.index(h) for h in hosts], run["topology"]
p = plan["plan"]
assert p["ep_rank_nodes"] == run["topology"]["ep_rank_nodes"], p["ep_rank_nodes"]
# Inter-node experts from the plan's traffic matrix and the hosts, counted here.
crossing = sum(n for s, row in enumerate(p["traffic"]) for t, n in enumerate(row)
               if hosts[s] != hosts[t])
assert crossing == p["totals"]["inter_node_experts"] == run["plan"]["inter_node_experts"], \
    (crossing, p["totals"], run["plan"])
assert run["bytes"]["inter_node"] == crossing * p["bytes_per_expert"] > 0, run["bytes"]
assert run["plan"]["experts_moved"] == p["totals"]["experts_moved"]
# The same placements planned as contiguous blocks of two cross nodes differently.
b = blocks["plan"]
blocks_crossing = sum(n for s, row in enumerate(b["traffic"]) for t, n in enumerate(row)
                      if hosts[s] != hosts[t])
print(f"inter-node experts: {crossing} on the real layout; a block-layout plan would "
      f"cross {blocks_crossing} there")
# These seeded placements are chosen so that it matters (36 vs 42, 33 vs 35).
assert crossing < blocks_crossing, (crossing, blocks_crossing)
PY
  pass || fail "$name: report and plan disagree on the layout"
}
# --map-by node: ranks 0..5 on h0 h1 h2 h0 h1 h2.
hosts_line 2 2 2
check_layout bynode h0,h1,h2,h0,h1,h2 --map-by node
# Uneven blocks: 3, 2 and 1 ranks.
hosts_line 3 2 1
check_layout uneven h0,h0,h0,h1,h1,h2 --map-by slot
[[ "$(tree_hash "$d/in")" == "$before" ]] && pass || fail "input modified"
left=$(find "$d" "$work"/priv-* -name '.eplb-shared-check.*' | wc -l)
[[ $left -eq 0 ]] && pass || fail "$left shared-directory check files left"

# An output directory that each host has its own copy of: refused before anything moves.
hosts_line 2 2 2
expect_exit 3 "$d/private.log" -- on_hosts 6 --map-by node -- "$tool" --old "$d/old.json" \
  --new "$d/new.json" --input "$d/in" --output "$work/priv/out" --backend mpi
expect_in "$d/private.log" "] output's parent directory '$work/priv' is not shared with rank 0's host h0: this host (h1) does not see rank 0's check file"
expect_in "$d/private.log" "this host (h2) does not see"
grep -q "this host (h0)" "$d/private.log" && fail "rank 0's host reported itself" || pass
# generate publishes from rank 0 too: the same refusal.
expect_exit 3 "$d/private-gen.log" -- on_hosts 3 --map-by node -- "$tool" generate \
  --placement "$d/new.json" --tensors "$spec" --output "$work/priv/gen"
expect_in "$d/private-gen.log" "] output's parent directory '$work/priv' is not shared with rank 0's host h0: this host (h2) does not see"
for h in h0 h1 h2; do
  n=$(find "$work/priv-$h" -mindepth 1 | wc -l)
  [[ $n -eq 0 ]] && pass || fail "$work/priv-$h holds $n entries after the refused run"
done
finish
