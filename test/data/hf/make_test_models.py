#!/usr/bin/env python3
"""Writes the tiny Hugging Face reference checkpoints under test/data/hf/.

Run once on a machine with PyTorch, transformers 5.x and safetensors:
    python3 make_test_models.py OUT_DIR
Each model is a tiny random configuration of a real family, saved with
save_pretrained(max_shard_size=...) so that it is sharded into several files, and then
loaded back with from_pretrained as a check. Two more are written with the safetensors
library directly: a DeepSeek-V3 FP8-style release (F8_E4M3 weights + F32 128x128 block
scales, experts' tensors deliberately spread over different files) and a Kimi-K2 config
over the same tensors. OUT_DIR/report.json records versions, tensor names and load results.
"""
import json
import os
import shutil
import sys
import traceback

import torch

OUT = sys.argv[1]
SHARD = "64KB"
torch.manual_seed(1234)
report = {"torch": torch.__version__}
try:
    import transformers
    report["transformers"] = transformers.__version__
except Exception as e:  # noqa: BLE001
    report["transformers_error"] = repr(e)
try:
    import safetensors
    report["safetensors"] = safetensors.__version__
except Exception as e:  # noqa: BLE001
    report["safetensors_error"] = repr(e)


def list_tensors(path):
    from safetensors import safe_open
    names = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(path, f), "pt") as h:
                for k in h.keys():
                    sl = h.get_slice(k)
                    names[k] = [f, str(sl.get_dtype()), list(sl.get_shape())]
    return names


def save_family(name, config_cls, model_cls, dtype=torch.bfloat16, **cfg):
    import transformers
    entry = {}
    report[name] = entry
    try:
        config = getattr(transformers, config_cls)(**cfg)
        model = getattr(transformers, model_cls)(config).to(dtype)
        # Random weights, not the init's zeros/ones, so a wrong byte cannot hide.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p, dtype=torch.float32).to(p.dtype) * 0.02)
        path = os.path.join(OUT, name)
        model.save_pretrained(path, max_shard_size=SHARD)
        entry["files"] = sorted(os.listdir(path))
        entry["tensors"] = list_tensors(path)
        try:
            getattr(transformers, model_cls).from_pretrained(path)
            entry["load"] = "ok"
        except Exception as e:  # noqa: BLE001
            entry["load"] = repr(e)
        print(name, "ok", entry["files"], flush=True)
    except Exception:  # noqa: BLE001
        entry["error"] = traceback.format_exc()
        print(name, "FAILED", entry["error"], flush=True)


COMMON = dict(vocab_size=128, max_position_embeddings=64, num_attention_heads=4,
              num_key_value_heads=2, tie_word_embeddings=False)

save_family("deepseek_v3", "DeepseekV3Config", "DeepseekV3ForCausalLM",
            **{**COMMON, "num_key_value_heads": 4}, hidden_size=64, intermediate_size=96,
            moe_intermediate_size=32, num_hidden_layers=4, n_shared_experts=1,
            n_routed_experts=8, num_experts_per_tok=2, first_k_dense_replace=1, n_group=2,
            topk_group=1, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8,
            qk_nope_head_dim=8, v_head_dim=8)
save_family("qwen3_moe", "Qwen3MoeConfig", "Qwen3MoeForCausalLM", **COMMON, hidden_size=64,
            intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3, head_dim=16,
            num_experts=8, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[0])
save_family("qwen2_moe", "Qwen2MoeConfig", "Qwen2MoeForCausalLM", **COMMON, hidden_size=64,
            intermediate_size=96, moe_intermediate_size=32, shared_expert_intermediate_size=48,
            num_hidden_layers=4, num_experts=6, num_experts_per_tok=2, decoder_sparse_step=2,
            mlp_only_layers=[])
save_family("olmoe", "OlmoeConfig", "OlmoeForCausalLM", **COMMON, hidden_size=64,
            intermediate_size=32, num_hidden_layers=2, num_experts=8, num_experts_per_tok=2)
save_family("mixtral", "MixtralConfig", "MixtralForCausalLM", **COMMON, hidden_size=64,
            intermediate_size=32, num_hidden_layers=3, num_local_experts=4,
            num_experts_per_tok=2)
save_family("gpt_oss", "GptOssConfig", "GptOssForCausalLM", **COMMON, hidden_size=64,
            intermediate_size=32, num_hidden_layers=2, head_dim=16, num_local_experts=4,
            num_experts_per_tok=2, sliding_window=16)
save_family("llama4", "Llama4TextConfig", "Llama4ForCausalLM", **COMMON, hidden_size=64,
            intermediate_size=32, intermediate_size_mlp=48, num_hidden_layers=4, head_dim=16,
            num_local_experts=4, num_experts_per_tok=1, interleave_moe_layer_step=2)


def save_deepseek_fp8():
    """DeepSeek-V3 FP8 release layout, written with safetensors: each expert's gate/up/down
    weight in F8_E4M3 with a weight_scale_inv F32 [ceil(out/128), ceil(in/128)]; attention
    projections FP8 too; norms, router and embeddings BF16; e_score_correction_bias F32.
    Files are filled in an order that puts one expert's tensors in different files."""
    from safetensors.torch import save_file
    entry = {}
    report["deepseek_v3_fp8"] = entry
    hidden, inter, moe_inter, layers, experts, dense = 256, 192, 160, 3, 4, 1
    fp8 = torch.float8_e4m3fn
    t = {}

    def blocks(n):
        return (n + 127) // 128

    def qweight(name, out_dim, in_dim):
        t[name] = (torch.randn(out_dim, in_dim) * 0.5).to(fp8)
        t[name + "_scale_inv"] = torch.rand(blocks(out_dim), blocks(in_dim)) + 0.5

    def bf16(name, *shape):
        t[name] = (torch.randn(*shape) * 0.02).to(torch.bfloat16)

    bf16("model.embed_tokens.weight", 128, hidden)
    bf16("model.norm.weight", hidden)
    bf16("lm_head.weight", 128, hidden)
    for L in range(layers):
        p = f"model.layers.{L}."
        bf16(p + "input_layernorm.weight", hidden)
        bf16(p + "post_attention_layernorm.weight", hidden)
        qweight(p + "self_attn.q_proj.weight", 64, hidden)
        qweight(p + "self_attn.o_proj.weight", hidden, 64)
        if L < dense:
            for n, o, i in (("gate_proj", inter, hidden), ("up_proj", inter, hidden),
                            ("down_proj", hidden, inter)):
                qweight(p + f"mlp.{n}.weight", o, i)
            continue
        bf16(p + "mlp.gate.weight", experts, hidden)
        t[p + "mlp.gate.e_score_correction_bias"] = torch.randn(experts)
        for n, o, i in (("gate_proj", moe_inter, hidden), ("up_proj", moe_inter, hidden),
                        ("down_proj", hidden, moe_inter)):
            qweight(p + f"mlp.shared_experts.{n}.weight", o, i)
        for E in range(experts):
            for n, o, i in (("gate_proj", moe_inter, hidden), ("up_proj", moe_inter, hidden),
                            ("down_proj", hidden, moe_inter)):
                qweight(p + f"mlp.experts.{E}.{n}.weight", o, i)
    # Round-robin the tensors over 5 files, in name order: neighbouring tensors of one
    # expert land in different files, as happens at shard boundaries of real releases.
    names = sorted(t)
    num_files = 5
    files = [f"model-{i + 1:05d}-of-{num_files:05d}.safetensors" for i in range(num_files)]
    path = os.path.join(OUT, "deepseek_v3_fp8")
    os.makedirs(path, exist_ok=True)
    weight_map = {}
    total = 0
    for i, f in enumerate(files):
        part = {n: t[n].contiguous() for k, n in enumerate(names) if k % num_files == i}
        save_file(part, os.path.join(path, f), metadata={"format": "pt"})
        for n in part:
            weight_map[n] = f
            total += part[n].numel() * part[n].element_size()
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                  fh, indent=2)
    config = {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "hidden_size": hidden, "intermediate_size": inter, "moe_intermediate_size": moe_inter,
        "num_hidden_layers": layers, "n_routed_experts": experts, "n_shared_experts": 1,
        "num_experts_per_tok": 2, "first_k_dense_replace": dense, "moe_layer_freq": 1,
        "vocab_size": 128, "torch_dtype": "bfloat16",
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                "quant_method": "fp8", "weight_block_size": [128, 128]},
    }
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    entry["files"] = sorted(os.listdir(path))
    entry["tensors"] = list_tensors(path)
    # Kimi-K2 ships DeepSeek-V3 tensors under its own model_type.
    kimi = os.path.join(OUT, "kimi_k2_fp8")
    shutil.copytree(path, kimi)
    config["model_type"] = "kimi_k2"
    config["architectures"] = ["DeepseekV3ForCausalLM"]
    with open(os.path.join(kimi, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    print("deepseek_v3_fp8 ok", entry["files"], flush=True)


try:
    save_deepseek_fp8()
except Exception:  # noqa: BLE001
    report["deepseek_v3_fp8_error"] = traceback.format_exc()
    print("deepseek_v3_fp8 FAILED", report["deepseek_v3_fp8_error"], flush=True)


def save_gpt_oss_mxfp4():
    """gpt-oss release layout: stacked experts as MXFP4, U8 `*_blocks` [E, rows, cols/32, 16]
    and U8 `*_scales` [E, rows, cols/32], biases BF16; other tensors as save_pretrained
    wrote them for the bf16 gpt_oss model."""
    from safetensors.torch import load_file, save_file
    src = os.path.join(OUT, "gpt_oss")
    path = os.path.join(OUT, "gpt_oss_mxfp4")
    os.makedirs(path, exist_ok=True)
    t = {}
    for f in sorted(os.listdir(src)):
        if f.endswith(".safetensors"):
            t.update(load_file(os.path.join(src, f)))
    out = {}
    for n, v in t.items():
        if n.endswith("experts.gate_up_proj") or n.endswith("experts.down_proj"):
            e, a, b = v.shape
            rows, cols = (b, a)  # stored transposed in the release: [E, out, in]
            out[n + "_blocks"] = torch.randint(0, 256, (e, rows, cols // 32, 16), dtype=torch.uint8)
            out[n + "_scales"] = torch.randint(118, 130, (e, rows, cols // 32), dtype=torch.uint8)
        else:
            out[n] = v.contiguous()
    names = sorted(out)
    files = ["model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors",
             "model-00002-of-00002.safetensors"]
    weight_map = {}
    for i, f in enumerate(files):
        part = {n: out[n] for k, n in enumerate(names) if k % 3 == i}
        save_file(part, os.path.join(path, f), metadata={"format": "pt"})
        weight_map.update({n: f for n in part})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, fh, indent=2)
    with open(os.path.join(src, "config.json")) as fh:
        config = json.load(fh)
    config["quantization_config"] = {"modules_to_not_convert": ["model.layers.*.self_attn",
                                     "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
                                     "quant_method": "mxfp4"}
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    report["gpt_oss_mxfp4"] = {"files": sorted(os.listdir(path)), "tensors": list_tensors(path)}
    print("gpt_oss_mxfp4 ok", flush=True)


try:
    save_gpt_oss_mxfp4()
except Exception:  # noqa: BLE001
    report["gpt_oss_mxfp4_error"] = traceback.format_exc()
    print("gpt_oss_mxfp4 FAILED", report["gpt_oss_mxfp4_error"], flush=True)

with open(os.path.join(OUT, "report.json"), "w") as fh:
    json.dump(report, fh, indent=1)
for k, v in report.items():
    if isinstance(v, dict):
        names = sorted(v.get("tensors", {}))
        experts = [n for n in names if "expert" in n and ("layers.1." in n or "layers.3." in n)]
        print(k, "load:", v.get("load"), "n:", len(names), "sample:", experts[:12], flush=True)
