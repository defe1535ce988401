#!/usr/bin/env python3
"""SGLang's expert distribution dump (.pt) as the JSON `eplb-rebalance balance --load` reads.

SGLang's recorder in stat mode (python/sglang/srt/eplb/expert_distribution.py,
_StatAccumulator.dump, after POST /dump_expert_distribution_record) saves with torch.save a
dict {"rank": int, "logical_count": int tensor [steps, num_hidden_layers,
num_logical_experts], "average_utilization_rate_over_window": float or None} to
$SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR/expert_distribution_recorder_<time>.pt. Its rows are
the model's hidden layers, dense ones counting 0: give `balance` the model's layers
(--model-layers, --hf or --checkpoint) so that it keeps the MoE rows.

Usage: sglang-loads-to-json.py DUMP.pt OUT.json   (OUT.json may be - for stdout)

Needs torch, which is what reads a .pt; the values are written exactly (integers stay
integers). Exit 0 on success, 2 when the file is not such a dump, 3 when it cannot be read or
the output cannot be written, 64 on bad arguments.
"""
import json
import os
import sys


def fail(code, message):
    print("sglang-loads-to-json: error: " + message, file=sys.stderr)
    sys.exit(code)


def convert(dump):
    if not isinstance(dump, dict):
        fail(2, "expected the dict SGLang's recorder saves, got %s" % type(dump).__name__)
    if "records" in dump:
        fail(2, "this is a per_token dump (records, last_physical_to_logical_map): run SGLang's "
                "recorder in stat mode (--expert-distribution-recorder-mode stat)")
    if "logical_count" not in dump:
        fail(2, "no \"logical_count\" among the keys %s" % sorted(dump))
    count = dump["logical_count"]
    if not hasattr(count, "tolist") or count.dim() not in (2, 3):
        fail(2, "\"logical_count\" is not a 2-D or 3-D tensor")
    if count.is_floating_point():
        values = count.tolist()
    else:
        values = count.to(dtype=__import__("torch").int64).tolist()
    out = {}  # in the dump's own key order
    for key, value in dump.items():
        if key == "logical_count":
            out[key] = values
        elif hasattr(value, "item"):
            out[key] = value.item()
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            fail(2, "\"%s\" is a %s, not a number" % (key, type(value).__name__))
    return out


def main(argv):
    if len(argv) != 3:
        fail(64, "usage: sglang-loads-to-json.py DUMP.pt OUT.json")
    try:
        import torch
    except ImportError:
        fail(3, "torch is not installed here: it is needed to read a .pt (convert where SGLang "
                "runs, or install python3-torch)")
    if not os.path.isfile(argv[1]):
        fail(3, "'%s': no such file" % argv[1])
    try:
        dump = torch.load(argv[1], map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not a .pt
        fail(2, "'%s' is not a torch file torch.load can read: %s" % (argv[1], error))
    text = json.dumps(convert(dump)) + "\n"
    if argv[2] == "-":
        sys.stdout.write(text)
        return
    try:
        with open(argv[2], "w") as f:
            f.write(text)
    except OSError as error:
        fail(3, "cannot write '%s': %s" % (argv[2], error.strerror))


if __name__ == "__main__":
    main(sys.argv)
