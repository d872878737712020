"""Training speed: our SFT recipe against TRL's SFTTrainer as a user would write it, on the same pairs.

    assistant bench training            # the real packaged model, 6 optimizer steps per variant
    assistant bench training --quick    # 3 steps per variant
    python -m eval.bench_training --variant trl-defaults --steps 2 --dataset DIR   # one variant, JSON on stdout

Every variant trains in this machine's precision (bf16 only where it is computed natively, see
`assistant.core.models.native_bf16`) with the same LoRA rank, alpha and target modules. TRL's loss path cannot
train the adapter's turn-token rows (its fused LM head reads `lm_head.bias`, which PEFT's
TrainableTokensWrapper lacks), so the comparison leaves them out on both sides; the last row is our recipe
as `assistant train` runs it, with them. `packed` splits what packing (and no checkpointing) buys from what
our loss buys: TRL's runs the 262k-row LM head, in tiles, on every position on a CPU (on Triton GPUs only
where labels are); ours runs it only where labels are.

Precisions: fp32 always, and bf16 too where the machine computes it natively (without, a bf16 matmul runs
PyTorch's reference GEMM, ~150x slower: that row would only measure the fallback); `train.bf16` set to true
or false runs that one alone. `of_ceiling` is the share of the machine's own GEMM throughput that the
step's necessary matmuls reach: `torch.mm` at the model's MLP shape is timed in the same run and
precision, and a trained token needs 4 x (linear weights) FLOPs (forward, and the backward to the
activations: the frozen weights get no gradient) plus 4 x (LM head) FLOPs where it carries loss.

Each variant runs in its own process, so its peak RSS is its own and so is a crash: a variant that fails is
a row with its error, the others still run, and `assistant bench` exits 1. Tokens/s counts real (unpadded)
tokens over timed optimizer steps, the first step left out. The pairs are the newest dataset in the
workspace, or, before one exists, pairs made from the corpus sections: half closed-book questions,
half with three context blocks, as the synthesiser writes them.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from assistant.core.config import Config
from assistant.core.manifest import latest_artifact

# name -> (label, turn-token rows trained); speedups are relative to trl-defaults
VARIANTS = {
    "trl-defaults": ("TRL SFTTrainer defaults: padded pairs, batch 8, gradient checkpointing, TRL's loss", False),
    "packed": ("packed rows, no checkpointing, TRL's loss", False),
    "ours": ("ours: packed rows, LM head at loss positions only", False),
    "ours+turn-rows": ("ours with the turn-token rows, as `assistant train` runs it", True),
}
MEASURES = ("tokens_per_s", "tokens_per_step", "step_s", "peak_rss_gb")


def run_bench(cfg: Config, quick: bool) -> list[dict]:
    from assistant.core.models import hardware_note, native_bf16

    steps = 3 if quick else 6
    machine = hardware_note()
    print(f"bench training on {machine}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        dataset = latest_artifact(cfg.datasets_dir) or corpus_pairs(cfg, Path(scratch) / "pairs")
        flops_per_token = training_flops_per_token(cfg, dataset)
        for bf16 in bench_precisions(cfg.train.bf16, native_bf16()):
            run_cfg = cfg.model_copy(deep=True)
            run_cfg.train.bf16 = bf16
            config_path = Path(scratch) / "config.json"
            config_path.write_text(run_cfg.model_dump_json())
            ceiling = gemm_gflops(run_cfg, bf16)
            results = {}
            for variant in VARIANTS:
                command = [sys.executable, "-m", "eval.bench_training", "--variant", variant, "--steps", str(steps),
                           "--dataset", str(dataset), "--config-json", str(config_path)]
                results[variant] = variant_result(variant, subprocess.run(command, capture_output=True, text=True))
            rows += precision_rows(results, "bf16" if bf16 else "fp32", ceiling, flops_per_token, machine)
    return rows


def bench_precisions(setting: bool | str, native: bool) -> list[bool]:
    """fp32 always, bf16 as well where it is native; an explicit setting measures that precision only."""
    if setting != "auto":
        return [bool(setting)]
    return [False, True] if native else [False]


def precision_rows(results: dict[str, dict], precision: str, ceiling_gflops: float, flops_per_token: float,
                   machine: str) -> list[dict]:
    baseline = results["trl-defaults"]["tokens_per_s"]
    rows = []
    for variant, result in results.items():
        label, turn_rows = VARIANTS[variant]
        speed = result["tokens_per_s"]
        rows.append({"variant": label, "precision": precision, "turn_rows": "yes" if turn_rows else "no",
                     **{name: result[name] for name in MEASURES},
                     "speedup": round(speed / baseline, 2) if baseline and speed else None,
                     "gemm_gflops": round(ceiling_gflops, 1),
                     "of_ceiling": f"{100 * speed * flops_per_token / (ceiling_gflops * 1e9):.1f}%" if speed else None,
                     "machine": machine, "error": result["error"]})
    return rows


def model_shapes(cfg: Config) -> dict[str, int]:
    from transformers import AutoConfig

    from assistant.core.models import base_model_path

    config = AutoConfig.from_pretrained(base_model_path(cfg))
    config = getattr(config, "text_config", config)
    return {"hidden": config.hidden_size, "intermediate": config.intermediate_size, "vocab": config.vocab_size,
            "layers": config.num_hidden_layers, "heads": config.num_attention_heads,
            "kv_heads": config.num_key_value_heads, "head_dim": getattr(config, "head_dim", None)
            or config.hidden_size // config.num_attention_heads}


def training_flops_per_token(cfg: Config, dataset: Path) -> float:
    """FLOPs a trained token needs: 4 x the linear weights of the layers (forward 2, backward to the activations
    2), plus 4 x the LM head for the share of tokens that carry loss (our recipe runs it only there)."""
    from assistant.core.models import load_tokenizer
    from training.sft import dataset_rows, read_dataset

    shape = model_shapes(cfg)
    attention = shape["hidden"] * shape["head_dim"] * (2 * shape["heads"] + 2 * shape["kv_heads"])
    mlp = 3 * shape["hidden"] * shape["intermediate"]
    linear = shape["layers"] * (attention + mlp)
    rows, _ = dataset_rows(read_dataset(dataset), load_tokenizer(cfg), cfg.train.max_seq_len)
    tokens = sum(len(r["input_ids"]) for r in rows)
    loss_share = sum(sum(label != -100 for label in r["labels"]) for r in rows) / max(1, tokens)
    return 4 * linear + 4 * shape["hidden"] * shape["vocab"] * loss_share


def gemm_gflops(cfg: Config, bf16: bool, tokens: int = 2048, repeats: int = 5) -> float:
    """torch.mm throughput at the model's MLP shape (a packed batch's tokens x hidden @ hidden x intermediate),
    in the precision being benchmarked, on this machine's threads: the ceiling a training step works under."""
    import time

    import torch

    shape = model_shapes(cfg)
    dtype = torch.bfloat16 if bf16 else torch.float32
    left = torch.randn(tokens, shape["hidden"], dtype=dtype)
    right = torch.randn(shape["hidden"], shape["intermediate"], dtype=dtype)
    torch.mm(left, right)                               # warm-up: kernel selection, allocations
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(left, right)
    seconds = (time.perf_counter() - start) / repeats
    return 2 * tokens * shape["hidden"] * shape["intermediate"] / seconds / 1e9


def variant_result(variant: str, done: subprocess.CompletedProcess) -> dict:
    """One variant process's measures, or empty measures and the error its traceback ended with."""
    if done.returncode == 0:
        return {**json.loads(done.stdout.strip().splitlines()[-1]), "error": ""}
    print(f"bench variant {variant} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return {**dict.fromkeys(MEASURES), "error": lines[-1][:200] if lines else f"exit {done.returncode}"}


def corpus_pairs(cfg: Config, folder: Path, count: int = 400, seed: int = 0) -> Path:
    """A dataset folder of pairs about the corpus sections, in the synthesiser's schema."""
    from assistant.core.prompts import build_messages
    from assistant.core.records import Chunk, Hit
    from training.cpt import corpus_texts

    sections = [text for text in corpus_texts(cfg) if len(text.split()) > 20]
    rng = random.Random(seed)
    records = []
    for number in range(count):
        heading, _, body = sections[number % len(sections)].partition("\n")
        answer = " ".join(re.split(r"(?<=[.!?])\s+", body.strip())[:2])[:400]
        question = f"What does {heading.strip('# ').strip()} say?"
        hits = None
        if number % 2:   # a RAFT-style pair: the right section among distractors, each cut like a chunk
            blocks = [sections[number % len(sections)], *rng.sample(sections, 2)]
            rng.shuffle(blocks)
            hits = [Hit(Chunk(id=str(i), doc_id="d", text=" ".join(b.split()[:120]), title=b.partition("\n")[0][:60],
                              section="", source="s"), 1.0) for i, b in enumerate(blocks)]
        messages = build_messages(question, hits) + [{"role": "assistant", "content": answer}]
        records.append({"messages": messages, "meta": {"type": "raft" if hits else "qa", "chunk_ids": [], "doc_id": "d"}})
    folder.mkdir(parents=True, exist_ok=True)
    cut = count * 9 // 10
    for name, part in (("train.jsonl", records[:cut]), ("validation.jsonl", records[cut:])):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return folder


def measure(cfg: Config, dataset: Path, variant: str, steps: int) -> dict:
    """Train `steps` optimizer steps with one variant's settings; tokens/s and peak memory."""
    from training.sft import read_pairs

    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        if variant == "trl-defaults":
            trainer = trl_defaults_trainer(cfg, read_pairs(dataset / "train.jsonl"), steps, Path(scratch))
        else:
            trainer = our_trainer(cfg, dataset, variant, steps, Path(scratch))
        trainer.train()
    timed = trainer.step_seconds[1:] or trainer.step_seconds
    return {
        "tokens_per_s": trainer.tokens_per_second(),
        "tokens_per_step": round(sum(trainer.step_tokens) / len(trainer.step_tokens)),
        "step_s": round(sum(timed) / len(timed), 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def trl_defaults_trainer(cfg: Config, records: list[dict], steps: int, output_dir: Path):
    """SFTTrainer as TRL's documentation writes it: the model's path, prompt-completion pairs (so the loss is
    on the answers, as ours) and a LoraConfig. SFTConfig keeps its defaults except the precision, which
    follows the machine, and what a benchmark needs (the steps, no checkpoints, no reports). The
    subclass only times the steps; with `loss_positions_only=False` the loss is TRL's."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig

    from assistant.core.models import base_model_path, use_bf16
    from training.trainer import CompletionLossTrainer

    targets = cfg.train.target_modules
    lora = LoraConfig(r=cfg.train.lora_r, lora_alpha=cfg.train.lora_alpha, lora_dropout=cfg.train.lora_dropout,
                      target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
                      task_type="CAUSAL_LM")
    pairs = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in records]
    args = SFTConfig(output_dir=str(output_dir), max_steps=steps, bf16=use_bf16(cfg.train.bf16, "training"),
                     save_strategy="no", report_to=[], logging_steps=steps, seed=cfg.seed,
                     use_cpu=not torch.cuda.is_available())
    return CompletionLossTrainer(model=str(base_model_path(cfg)), args=args, train_dataset=Dataset.from_list(pairs),
                                 peft_config=lora, loss_positions_only=False)


def our_trainer(cfg: Config, dataset: Path, variant: str, steps: int, output_dir: Path):
    """Our recipe's trainer (training.sft.train_stage without validation or budget): packed rows, and with
    `ours` the LM head only where the loss is; `packed` keeps TRL's loss on the same rows."""
    from datasets import Dataset

    from assistant.core.models import load_tokenizer
    from training.sft import dataset_rows, lora_model, pack_rows, read_dataset
    from training.trainer import CompletionLossTrainer, PackedRowsCollator, training_arguments

    tokenizer = load_tokenizer(cfg)
    train_rows, _ = dataset_rows(read_dataset(dataset), tokenizer, cfg.train.max_seq_len)
    model = lora_model(cfg, turn_rows=VARIANTS[variant][1])
    args = training_arguments(cfg, output_dir, has_validation=False, max_steps=steps, save_strategy="no",
                              report_to=[], logging_steps=steps)
    return CompletionLossTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(pack_rows(train_rows, cfg.train.max_seq_len)),
        data_collator=PackedRowsCollator(tokenizer.pad_token_id), loss_positions_only=variant != "packed")


def main() -> None:
    parser = argparse.ArgumentParser(description="Time one training variant.")
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="ours")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dataset", type=Path, help="Dataset folder (default: pairs made from the corpus).")
    parser.add_argument("--config-json", type=Path, help="A Config dumped as JSON (default: load_config()).")
    args = parser.parse_args()
    from assistant.core.config import load_config

    cfg = Config.model_validate_json(args.config_json.read_text()) if args.config_json else load_config()
    dataset = args.dataset or corpus_pairs(cfg, Path(tempfile.mkdtemp(prefix="bench-pairs-")))
    print(json.dumps(measure(cfg, dataset, args.variant, args.steps)))


if __name__ == "__main__":
    main()
