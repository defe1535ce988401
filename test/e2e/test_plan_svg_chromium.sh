#!/usr/bin/env bash
# plan --svg as a browser shows it: headless Chromium parses the SVG (its DOM holds the
# labels, and no parser error) and renders it (a screenshot with the picture's colours:
# the matrix blues and the busiest sender's red). Skipped (77) where chromium is absent.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then echo "SKIP: no chromium"; exit 77; fi
demo="$here/../../configs/demo"
mkdir -p "$work/p"
/usr/bin/python3 "$here/placements.py" random 11 8 3 20 5 "$work/p"
expect_exit 0 "$work/plan.log" -- "$tool" plan --old "$work/p/old.json" --new "$work/p/new.json" \
  --tensors "w13:bf16:256x128,w2:bf16:128x128" --ranks-per-node 4 --svg "$work/t.svg"
read -r width height < <(sed -n 's/.*<svg [^>]*width="\([0-9]*\)" height="\([0-9]*\)".*/\1 \2/p' "$work/t.svg")
chrome() {
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d "$work/profile.XXXXXX")" --hide-scrollbars "$@" 2>>"$work/chrome.err"
}
chrome --dump-dom "file://$work/t.svg" >"$work/dom.xml" || true
/usr/bin/python3 - "$work/dom.xml" <<'PY' && pass || fail "labels in chromium's DOM"
import sys
dom = open(sys.argv[1], encoding="utf-8").read()
assert "parsererror" not in dom and "This page contains the following errors" not in dom, dom[:500]
for label in ("sender (EP rank)", "receiver (EP rank)", "busiest sender: rank ", "node 0", "node 1",
              "layer 0", "layer 4", "per layer"):
    assert label in dom, label
PY
chrome --window-size="$width,$height" --screenshot="$work/t.png" "file://$work/t.svg" >/dev/null || true
/usr/bin/python3 - "$work/t.png" "$width" "$height" <<'PY' && pass || fail "chromium's screenshot of the picture"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, chunks = 8, {}
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    chunks.setdefault(kind, b"")
    chunks[kind] += data[pos + 8:pos + 8 + length]
    pos += 12 + length
w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
assert (w, h) == (int(sys.argv[2]), int(sys.argv[3])), (w, h)
assert depth == 8 and ctype in (2, 6), (depth, ctype)
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(chunks[b"IDAT"]), w * bpp
rows, prev = [], bytearray(stride)
for y in range(h):  # undo the PNG row filters
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line); prev = line
pixels = [tuple(r[i:i + 3]) for r in rows for i in range(0, stride, bpp)]
white = sum(p == (255, 255, 255) for p in pixels)
red = sum(p == (0xd6, 0x27, 0x28) for p in pixels)           # the busiest sender's mark
blue = sum(p[2] > p[0] + 40 and p[2] > 100 for p in pixels)  # matrix cells and the legend
assert white < 0.97 * len(pixels), f"nearly blank: {white} of {len(pixels)} white"
assert red > 200, f"no busiest-sender mark: {red} red pixels"
assert blue > 2000, f"no matrix: {blue} blue pixels"
print(f"{w}x{h}: {white} white, {red} red, {blue} blue pixels")
PY
finish
