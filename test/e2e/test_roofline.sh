#!/usr/bin/env bash
# The storage roofline (docs/CLI.md `bench --io`, `run --roofline`): the report's keys and
# byte counts, the buffered fallback where O_DIRECT is refused, no scratch file left
# behind, and (when Debian's fio is installed) the figure against fio's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
demo="$here/../../configs/demo"
export WORK="$work" HF="$here/../data/hf/mixtral"
check() {  # check REPORT PYTHON-ASSERTIONS: runs them with `r` the parsed report
  /usr/bin/python3 - "$1" "$2" <<'PY' && pass || fail "report $1: $2"
import json, os, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))
def size(path):
    if os.path.isfile(path): return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
exec(sys.argv[2])
PY
}
no_scratch() {  # no_scratch DIR: the roofline's scratch files are gone
  if ls -A "$1" | grep -q '^\.eplb-roofline'; then fail "scratch files left in $1"; else pass; fi
}

expect_exit 0 "$work/gen.log" -- mpi 2 "$tool" generate --placement "$demo/old.json" \
  --tensors "w13:bf16:256x256,w2:bf16:256x128" --seed 4 --output "$work/in"

# run --roofline: measured after the run, the input's bytes read, the output's written.
expect_exit 0 "$work/run.log" -- mpi 2 "$tool" --old "$demo/old.json" --new "$demo/new.json" \
  --input "$work/in" --output "$work/out" --backend mpi --roofline --json "$work/run.json"
expect_in "$work/run.log" "storage roofline:"
expect_in "$work/run.log" "the run took"
check "$work/run.json" '
f = r["roofline"]
assert f["streams"] == 2 and f["block_bytes"] == 1 << 20, f
assert f["bytes"]["read"] == size(os.environ["WORK"] + "/in"), (f["bytes"], size(os.environ["WORK"] + "/in"))
assert f["bytes"]["written"] == size(os.environ["WORK"] + "/out"), f["bytes"]
s = f["seconds"]
assert set(s) == {"concurrent", "single_stream", "single_stream_read", "single_stream_write"}, s
assert s["concurrent"] > 0 and s["single_stream_read"] > 0 and s["single_stream_write"] > 0
assert abs(s["single_stream"] - s["single_stream_read"] - s["single_stream_write"]) < 1e-9
assert f["io"]["read"] in ("direct", "buffered") and f["io"]["write"] in ("direct", "buffered")
assert (f["io"]["read"] == "direct") == (not any("reads of" in n for n in f["notes"])), f
assert f["job_seconds"] == r["seconds"]["total"]
assert abs(f["over_concurrent"] - f["job_seconds"] / s["concurrent"]) < 1e-9
assert abs(f["over_single_stream"] - f["job_seconds"] / s["single_stream"]) < 1e-9'
no_scratch "$work"
# Without --roofline there is no roofline section.
expect_exit 0 "$work/run2.log" -- mpi 2 "$tool" --old "$demo/old.json" --new "$demo/new.json" \
  --input "$work/in" --output "$work/out2" --backend mpi --json "$work/run2.json"
check "$work/run2.json" 'assert "roofline" not in r'

# bench --io: a byte count of its own; one process per stream pair.
head -c $((5 * 1048576 + 12345)) /dev/urandom >"$work/blob"
mkdir "$work/scratch"
expect_exit 0 "$work/io.log" -- mpi 3 "$tool" bench --io --input "$work/blob" \
  --output-dir "$work/scratch" --write-bytes 3MiB --json "$work/io.json"
check "$work/io.json" '
f = r["roofline"]
assert r["command"] == "bench" and r["result"] == "ok" and f["streams"] == 3
assert f["bytes"] == {"read": 5 * 1048576 + 12345, "written": 3 * 1048576}, f["bytes"]
assert "job_seconds" not in f and "over_concurrent" not in f'
no_scratch "$work/scratch"

# Where O_DIRECT is refused: buffered, the input evicted first, and the output says so.
EPLB_TEST_NO_O_DIRECT=1 expect_exit 0 "$work/buf.log" -- mpi 2 -x EPLB_TEST_NO_O_DIRECT "$tool" \
  bench --io --input "$work/in" --output-dir "$work/scratch" --no-single-stream \
  --json "$work/buf.json"
expect_in "$work/buf.log" "posix_fadvise(DONTNEED)"
check "$work/buf.json" '
f = r["roofline"]
assert f["io"] == {"read": "buffered", "write": "buffered"}, f["io"]
assert any("O_DIRECT refused" in n for n in f["notes"]), f["notes"]
assert f["seconds"]["single_stream"] == 0'
no_scratch "$work/scratch"

# Bad input: exit 2, and an output directory that is not one is a usage error.
expect_exit 2 "$work/bad.log" -- mpi 1 "$tool" bench --io --input "$work/missing" \
  --output-dir "$work/scratch"
expect_in "$work/bad.log" "missing' does not exist"
expect_exit 64 "$work/bad2.log" -- mpi 1 "$tool" bench --io --input "$work/blob" \
  --output-dir "$work/blob"

# import and export: --json keys, and --roofline reading as many bytes as the job read
# (the experts' for import; the rows and the other tensors for export).
hf="$here/../data/hf/mixtral"
/usr/bin/python3 "$here/hf_check.py" placement 7 2 3 4 3 "$work/hfp.json"
expect_exit 0 "$work/imp.log" -- mpi 2 "$tool" import --hf "$hf" --placement "$work/hfp.json" \
  --output "$work/hfck" --roofline --json "$work/imp.json"
expect_in "$work/imp.log" "the import took"
check "$work/imp.json" '
assert r["command"] == "import" and r["result"] == "ok" and r["files"] == 2
assert r["num_moe_layers"] == 3 and r["num_logical_experts"] == 4
b, f = r["bytes"], r["roofline"]
assert 0 < b["read"] <= b["written"], b  # replicas are read once per shard, written per slot
assert f["bytes"] == {"read": b["read"], "written": size(os.environ["WORK"] + "/hfck")}, (f["bytes"], b)
assert f["job_seconds"] == r["seconds"]["total"] and f["over_concurrent"] > 0'
expect_exit 0 "$work/exp.log" -- mpi 2 "$tool" export --checkpoint "$work/hfck" --hf-base "$hf" \
  --output "$work/hfout" --roofline --json "$work/exp.json"
expect_in "$work/exp.log" "the export took"
for f in "$hf"/*; do cmp -s "$f" "$work/hfout/$(basename "$f")" && pass || fail "export differs: $f"; done
check "$work/exp.json" '
import glob
st = sum(os.path.getsize(p) for p in glob.glob(os.environ["HF"] + "/*.safetensors"))
b, f = r["bytes"], r["roofline"]
assert r["command"] == "export" and r["files"] == 5 and b["written"] == st, (b, st)
assert 0 < b["read"] < st and f["bytes"]["read"] == b["read"], (b, f["bytes"])
assert f["bytes"]["written"] == size(os.environ["WORK"] + "/hfout")'
no_scratch "$work"
# Where O_DIRECT is refused, import and export fall back to buffered I/O: same bytes.
EPLB_TEST_NO_O_DIRECT=1 expect_exit 0 "$work/imp2.log" -- mpi 2 -x EPLB_TEST_NO_O_DIRECT "$tool" \
  import --hf "$hf" --placement "$work/hfp.json" --output "$work/hfck2"
EPLB_TEST_NO_O_DIRECT=1 expect_exit 0 "$work/exp2.log" -- mpi 2 -x EPLB_TEST_NO_O_DIRECT "$tool" \
  export --checkpoint "$work/hfck2" --hf-base "$hf" --output "$work/hfout2"
for f in "$hf"/*; do cmp -s "$f" "$work/hfout2/$(basename "$f")" && pass || fail "buffered export differs: $f"; done

# Against fio (Debian's `fio`, optional): the single-stream direct read of the same file,
# 1 MiB blocks, must agree within a factor of 3 (a shared machine is noisy; a broken
# measurement, e.g. one served from the page cache, is off by far more).
if command -v fio >/dev/null; then
  head -c $((64 << 20)) /dev/urandom >"$work/big"
  expect_exit 0 "$work/io2.log" -- mpi 1 "$tool" bench --io --input "$work/big" \
    --output-dir "$work/scratch" --json "$work/io2.json"
  fio --name=r --filename="$work/big" --rw=read --bs=1M --direct=1 --ioengine=psync \
    --output-format=json >"$work/fio.json" 2>/dev/null
  check "$work/io2.json" '
fio = json.load(open(os.environ["WORK"] + "/fio.json"))["jobs"][0]["read"]["bw_bytes"]
ours = r["roofline"]["bytes"]["read"] / r["roofline"]["seconds"]["single_stream_read"]
assert fio / 3 < ours < fio * 3, (ours, fio)'
else
  echo "fio not installed: the comparison with fio is skipped"
fi

echo "$checks checks, $failures failures"
[[ $failures -eq 0 ]]
