"""Training speed: our SFT settings against TRL's SFTTrainer defaults, on the same pairs, in one run.

    assistant bench training            # the real packaged model, a few optimizer steps per variant
    assistant bench training --quick    # fewer steps
    python -m eval.bench_training --variant ours --steps 4 --dataset DIR   # one variant, JSON on stdout

Each variant runs in its own process, so its peak RSS is its own. Tokens/s counts real (unpadded)
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

from assistant.config import Config
from assistant.manifest import latest_artifact

# (label, SFTConfig overrides, packed rows, LM head only where labels are)
VARIANTS = {
    "trl-defaults": ("TRL SFTTrainer defaults: fp32, padded, full logits, gradient checkpointing",
                     {"bf16": False, "gradient_checkpointing": True}, False, False),
    "fp32-padded": ("fp32, padded, full logits, no checkpointing", {"bf16": False}, False, False),
    "bf16-packed": ("bf16, packed, full logits", {}, True, False),
    "ours": ("ours: bf16, packed, LM head at loss positions only", {}, True, True),
}
QUICK_VARIANTS = ("trl-defaults", "ours")


def run_bench(cfg: Config, quick: bool) -> list[dict]:
    steps = 3 if quick else 6
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        dataset = latest_artifact(cfg.datasets_dir) or corpus_pairs(cfg, Path(scratch) / "pairs")
        config_path = Path(scratch) / "config.json"
        config_path.write_text(cfg.model_dump_json())
        rows = []
        for variant in QUICK_VARIANTS if quick else tuple(VARIANTS):
            command = [sys.executable, "-m", "eval.bench_training", "--variant", variant, "--steps", str(steps),
                       "--dataset", str(dataset), "--config-json", str(config_path)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"bench variant {variant} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    baseline = rows[0]["tokens_per_s"]
    for row in rows:
        row["speedup"] = round(row["tokens_per_s"] / baseline, 2) if baseline else None
    return rows


def corpus_pairs(cfg: Config, folder: Path, count: int = 400, seed: int = 0) -> Path:
    """A dataset folder of pairs about the corpus sections, in the synthesiser's schema."""
    from assistant.prompts import build_messages
    from indexing.records import Chunk, Hit
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
    from datasets import Dataset

    from assistant.models import load_tokenizer
    from training.sft import dataset_rows, lora_model, pack_rows, read_dataset
    from training.trainer import CompletionLossTrainer, PackedRowsCollator, training_arguments

    label, overrides, packed, positions_only = VARIANTS[variant]
    tokenizer = load_tokenizer(cfg)
    train_rows, _ = dataset_rows(read_dataset(dataset), tokenizer, cfg.train.max_seq_len)
    if packed:   # else TRL's own collator pads each batch to its longest pair, with an attention mask
        train_rows = pack_rows(train_rows, cfg.train.max_seq_len)
    cfg.train.bf16 = overrides.get("bf16", True)    # fp32 variants load fp32 weights, bf16 ones bf16 weights
    model = lora_model(cfg)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        args = training_arguments(cfg, Path(scratch), has_validation=False, max_steps=steps, save_strategy="no",
                                  report_to=[], logging_steps=steps, **overrides)
        trainer = CompletionLossTrainer(
            model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(train_rows),
            data_collator=PackedRowsCollator(tokenizer.pad_token_id) if packed else None,
            loss_positions_only=positions_only)
        trainer.train()
    timed = trainer.step_seconds[1:] or trainer.step_seconds
    return {
        "variant": label,
        "tokens_per_s": trainer.tokens_per_second(),
        "tokens_per_step": round(sum(trainer.step_tokens) / len(trainer.step_tokens)),
        "step_s": round(sum(timed) / len(timed), 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Time one training variant.")
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="ours")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dataset", type=Path, help="Dataset folder (default: pairs made from the corpus).")
    parser.add_argument("--config-json", type=Path, help="A Config dumped as JSON (default: load_config()).")
    args = parser.parse_args()
    from assistant.config import load_config

    cfg = Config.model_validate_json(args.config_json.read_text()) if args.config_json else load_config()
    dataset = args.dataset or corpus_pairs(cfg, Path(tempfile.mkdtemp(prefix="bench-pairs-")))
    print(json.dumps(measure(cfg, dataset, args.variant, args.steps)))


if __name__ == "__main__":
    main()
