"""Engine speed and memory: prefill tokens/s, time to first token and decode tokens/s over a large repository
cache (sparse MSA and dense), tokens re-prefilled after a one-line edit, KV bytes per token, and the largest
repository that fits the device.

Random weights (speed does not depend on them) in a Hugging Face checkpoint written to a temporary directory.
Presets: "1.5b" = Qwen2.5-1.5B shape (28 layers, 12/2 heads, d=128, hidden 1536, vocab 151936); "small" for CPU.
Prints a table and ends with one JSON line; --out also writes that JSON to a file.

    python benchmarks/bench_engine.py --preset 1.5b --repo-tokens 100000          # GPU
    python benchmarks/bench_engine.py --preset small --repo-tokens 20000          # CPU
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.engine import Engine  # noqa: E402

PRESETS = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, head_dim=128, vocab_size=151936, max_position_embeddings=32768),
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, vocab_size=4096, max_position_embeddings=32768),
}
SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
            "<|repo_name|>", "<|file_sep|>"]


def _code(i: int, lines: int) -> str:
    return "".join(f"def handler_{i}_{j}(request, value={j}):\n    result = compute(request, value) + {i * j}\n"
                   f"    return result\n\n" for j in range(lines))


def write_checkpoint(path: pathlib.Path, preset: str) -> None:
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    shape = PRESETS[preset]
    config = dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], rms_norm_eps=1e-6, rope_theta=1e6,
                  tie_word_embeddings=True, **shape)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([_code(i, 20) for i in range(30)], trainer)
    tok.save(str(path / "tokenizer.json"))
    h, d, L = shape["hidden_size"], shape["head_dim"], shape["num_hidden_layers"]
    hq, hkv, f = shape["num_attention_heads"], shape["num_key_value_heads"], shape["intermediate_size"]
    g = torch.Generator().manual_seed(0)

    def rnd(*s):
        return (torch.randn(*s, generator=g) * 0.02).to(torch.bfloat16)

    w = {"model.embed_tokens.weight": rnd(shape["vocab_size"], h), "model.norm.weight": torch.ones(h, dtype=torch.bfloat16)}
    for i in range(L):
        p = f"model.layers.{i}."
        w.update({p + "self_attn.q_proj.weight": rnd(hq * d, h), p + "self_attn.q_proj.bias": rnd(hq * d),
                  p + "self_attn.k_proj.weight": rnd(hkv * d, h), p + "self_attn.k_proj.bias": rnd(hkv * d),
                  p + "self_attn.v_proj.weight": rnd(hkv * d, h), p + "self_attn.v_proj.bias": rnd(hkv * d),
                  p + "self_attn.o_proj.weight": rnd(h, hq * d), p + "mlp.gate_proj.weight": rnd(f, h),
                  p + "mlp.up_proj.weight": rnd(f, h), p + "mlp.down_proj.weight": rnd(h, f),
                  p + "input_layernorm.weight": torch.ones(h, dtype=torch.bfloat16),
                  p + "post_attention_layernorm.weight": torch.ones(h, dtype=torch.bfloat16)})
    save_file(w, str(path / "model.safetensors"), metadata={"format": "pt"})


def synth_repo(engine: Engine, tokens: int) -> list[tuple[str, str, str]]:
    """Files of ~1000 tokens each until the repository holds about `tokens` tokens."""
    per_file = len(engine.tok.encode(_code(0, 20)))
    lines = max(1, int(20 * 1000 / per_file))
    n = max(1, tokens // 1000)
    return [(f"src/module_{i}.py", str(i), _code(i, lines)) for i in range(n)]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_completions(engine: Engine, prefix: str, suffix: str, runs: int, max_tokens: int):
    ttft, decode = [], []
    for r in range(runs + 1):
        pieces = list(engine.complete(f"live/file_{time.monotonic_ns()}.py", prefix, suffix, max_tokens=max_tokens))
        st = engine.last_stats
        if r == 0:  # warm-up: kernel compilation, allocator
            continue
        ttft.append(st["ttft_ms"])
        if st["generated_tokens"] > 1:
            decode.append((st["generated_tokens"] - 1) / (st["decode_ms"] / 1e3))
        del pieces
    return statistics.median(ttft), (statistics.median(decode) if decode else None), st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="1.5b" if torch.cuda.is_available() else "small")
    ap.add_argument("--repo-tokens", type=int, default=100_000)
    ap.add_argument("--tail-tokens", type=int, default=1000, help="approximate FIM prompt length")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dense", action="store_true", help="also time dense attention over the whole repository")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = pathlib.Path(tmp) / args.preset
        t = time.perf_counter()
        write_checkpoint(model_dir, args.preset)
        engine = Engine(str(model_dir), device=args.device)
        load_s = time.perf_counter() - t
    device = engine.device
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    files = synth_repo(engine, args.repo_tokens)

    _sync(device)
    t = time.perf_counter()
    info = engine.sync(files, [])
    _sync(device)
    prefill_s = time.perf_counter() - t
    prefill_tps = info["prefilled_tokens"] / prefill_s

    body = _code(999, 200)
    tail_ids = engine.tok.encode(body)
    cut = len(engine.tok.decode(tail_ids[: args.tail_tokens]))
    prefix, suffix = body[:cut], body[cut : cut + 400]
    ttft, decode_tps, st = time_completions(engine, prefix, suffix, args.runs, args.max_tokens)
    row = dict(attention="sparse", ttft_ms=round(ttft, 1), decode_tok_s=decode_tps and round(decode_tps, 1),
               prompt_tokens=st["prompt_tokens"], generated=st["generated_tokens"],
               selected_blocks=st["selected_blocks"], repo_blocks=st["repo_blocks"])
    rows = [row]
    if args.dense:
        engine.attention = "dense"
        d_ttft, d_decode, d_st = time_completions(engine, prefix, suffix, max(1, args.runs - 1), min(16, args.max_tokens))
        rows.append(dict(attention="dense", ttft_ms=round(d_ttft, 1), decode_tok_s=d_decode and round(d_decode, 1),
                         prompt_tokens=d_st["prompt_tokens"], generated=d_st["generated_tokens"],
                         selected_blocks=None, repo_blocks=d_st["repo_blocks"]))
        engine.attention = "sparse"

    path, _, text = files[len(files) // 2]
    edited = text.replace("return result", "return result + 1", 1)
    t = time.perf_counter()
    edit = engine.sync([(path, "edited", edited)], [])
    _sync(device)
    edit_ms = (time.perf_counter() - t) * 1e3

    stats = engine.stats()
    kv_bytes_per_token = stats["bytes_per_page"] / 128
    fit = None
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        held = torch.cuda.memory_reserved(device)
        weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
        budget = total - weights - (4 << 30)  # 4 GiB left for activations, tail and workspace
        fit = dict(total_gib=round(total / 2**30, 1), weights_gib=round(weights / 2**30, 2),
                   reserved_gib=round(held / 2**30, 2), max_repo_tokens=int(budget / kv_bytes_per_token))
    result = dict(bench="engine", device=str(device), card=card, preset=args.preset, dtype=str(engine.dtype),
                  torch=torch.__version__, layout=engine.layout, top_k_blocks=engine.top_k,
                  repo_tokens=info["tokens"], repo_files=len(files), segments=info["segments"],
                  load_s=round(load_s, 1), prefill_s=round(prefill_s, 2), prefill_tok_s=round(prefill_tps, 1),
                  completions=rows, edit_prefilled_tokens=edit["prefilled_tokens"], edit_ms=round(edit_ms, 1),
                  edit_file_tokens=len(engine.tok.encode(engine.fim.file_header(path, edited) + edited)),
                  kv_bytes_per_token=round(kv_bytes_per_token, 1), cache_bytes=stats["bytes"], fit=fit)

    print(f"device {card} ({device}), preset {args.preset}, dtype {engine.dtype}")
    print(f"repository: {info['tokens']} tokens in {len(files)} files -> prefill {prefill_s:.2f} s, {prefill_tps:,.0f} tok/s")
    print(f"{'attention':<10}{'TTFT ms':>10}{'decode tok/s':>14}{'prompt':>8}{'blocks sel/all':>16}")
    for r in rows:
        sel = f"{r['selected_blocks']}/{r['repo_blocks']}"
        print(f"{r['attention']:<10}{r['ttft_ms']:>10}{str(r['decode_tok_s']):>14}{r['prompt_tokens']:>8}{sel:>16}")
    print(f"one-line edit: {edit['prefilled_tokens']} tokens re-prefilled (file has {result['edit_file_tokens']}), {edit_ms:.0f} ms")
    print(f"KV bytes per token: {kv_bytes_per_token:.0f}" + (f"; fits ~{fit['max_repo_tokens']:,} repository tokens" if fit else ""))
    line = json.dumps(result)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
