"""LoRA fine-tuning with TRL's SFTTrainer and PEFT, read top to bottom: setup -> data -> model -> train -> save.

    assistant train                                   # the newest dataset under the workspace, config defaults
    assistant train --dataset workspace/finance/datasets/<id> --epochs 2 --json
    assistant train --objective cpt+sft               # next-token training on the corpus chunks, then the pairs
    accelerate launch --config_file training/accelerate/ddp_cpu.yaml -m assistant train   # 2 processes (gloo)

Speed on a CPU comes from three things, each measured by `assistant bench training`: bf16 autocast,
packed rows without padding, and the LM head run only where the loss is. Gemma's 262k-token head is
most of a step when it runs on every token, yet only the answer tokens carry loss.

The adapter lands in `<workspace>/adapters/<id>/` (written atomically); `<id>` hashes the dataset, the
corpus (CPT), the base model and the training settings, so an unchanged re-run is skipped. Checkpoints
live in `<workspace>/adapters/.<id>.run/` until the adapter is complete, so `--resume` continues a
killed run from its last checkpoint.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assistant.core.answer_loss import IGNORE
from assistant.core.config import Config, ConfigError
from assistant.core.errors import TrainDataError
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import (atomic_folder, build_manifest, is_up_to_date, latest_artifact, read_manifest,
                                sha256_files, sha256_json, write_manifest)
from assistant.core.models import (base_model_path, hardware_note, load_base_model, load_tokenizer, precision_name,
                              use_bf16)
from assistant.core.prompts import END_OF_TURN
from training.cpt import corpus_rows
from training.trainer import (CompletionLossTrainer, PackedRowsCollator, ProgressBar, TimeBudget,
                              StopOnValidation, plan_steps, training_arguments)

RECIPE_VERSION = "lora+turn-tokens-v1"   # how the trainable weights are set up; a change retrains
_ROLES = {"system", "user", "assistant"}


@dataclass
class TrainReport:
    adapter: Path
    train_loss: float | None
    val_loss: float | None
    steps: int
    tokens_per_s: float
    stopped_early: bool
    seconds: float
    note: str = ""          # why training stopped early, or that the adapter was already up to date
    precision: str = ""     # bf16 or fp32, as chosen for this machine
    tokens: int = 0         # real (unpadded) tokens trained on
    exposures: float = 0.0  # passes over the training set the steps bought
    plan: str = ""          # why this many steps: the budget, --max-steps or the epochs

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "adapter": str(self.adapter)}


def train_adapter(cfg: Config, dataset: Path | None = None, resume: bool = False, progress: bool = True,
                  callbacks: Sequence = (), budget_minutes: float | None = None) -> TrainReport:
    """Train (or find up to date) the LoRA adapter for `cfg` on `dataset` (default: the newest one).
    `callbacks` are extra TrainerCallbacks, such as the pruning of `assistant tune`. `budget_minutes` replaces
    `train.budget_minutes` for this run only (`assistant run` cuts it to fit), without changing the adapter's
    identity, so a re-run finds or resumes the same adapter."""
    budget_minutes = cfg.train.budget_minutes if budget_minutes is None else budget_minutes
    started = time.perf_counter()
    # 1. setup: the inputs decide the adapter's id; an adapter with the same inputs is already done
    import torch

    if cfg.train.qlora and not torch.cuda.is_available():
        raise ConfigError("--qlora needs a CUDA GPU (bitsandbytes 4-bit weights); drop --qlora to train on the CPU")
    objective = cfg.train.objective
    dataset_dir = find_dataset(cfg, dataset) if "sft" in objective else None
    pairs = read_dataset(dataset_dir) if dataset_dir is not None else {}   # bad lines fail here, in a second

    # 2. data: token ids, with labels on the answer (SFT) or on every token (CPT)
    tokenizer = load_tokenizer(cfg)
    stages: list[tuple[str, list[dict], list[dict]]] = []
    if objective.startswith("cpt"):
        stages.append(("cpt", *corpus_rows(cfg, tokenizer)))
    if pairs:
        stages.append(("sft", *dataset_rows(pairs, tokenizer, cfg.train.max_seq_len)))
    # a fixed sample of the validation rows: scoring them all at every evaluation would cost more than training
    stages = [(name, train, _sample(val, cfg.train.max_val_pairs, cfg.seed)) for name, train, val in stages]
    inputs = adapter_inputs(cfg, dataset_dir, stages)
    adapter_dir = cfg.adapters_dir / sha256_json(inputs)[:12]
    if is_up_to_date(adapter_dir, inputs):
        return report_from_manifest(adapter_dir)
    run_dir = adapter_dir.with_name(f".{adapter_dir.name}.run")
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)

    # 3. model: the base weights frozen, LoRA on top (its random A matrices drawn from the seed)
    from transformers import set_seed

    set_seed(cfg.seed)
    model = lora_model(cfg)

    # 4. train, one stage after the other on the same adapter (CPT, then SFT)
    print(f"training precision: {precision_name(use_bf16(cfg.train.bf16, 'training'))} ({hardware_note()})",
          file=sys.stderr, flush=True)
    results = []
    for number, (name, train, val) in enumerate(stages):
        # The time budget counts from the start of the command; stages share what is left equally.
        left = budget_minutes * 60 - (time.perf_counter() - started)
        budget_s = max(60.0, left) / (len(stages) - number) if budget_minutes else None
        results.append(train_stage(cfg, model, tokenizer, name, train, val, run_dir / name, resume, progress, budget_s,
                                   callbacks))

    # 5. save: adapter, loss curves, TensorBoard logs, manifest; the folder appears only when complete
    final = results[-1]
    report = TrainReport(adapter=adapter_dir, train_loss=final["train_loss"], val_loss=final["val_loss"],
                         steps=sum(r["steps"] for r in results), tokens_per_s=final["tokens_per_s"],
                         stopped_early=any(r["stopped_early"] for r in results),
                         seconds=round(time.perf_counter() - started, 1),
                         note="; ".join(r["note"] for r in results if r["note"]),
                         precision=final["precision"], tokens=sum(r["tokens"] for r in results),
                         exposures=final["exposures"], plan="; ".join(r["plan"]["why"] for r in results))
    if results[-1]["is_main_process"]:
        save_adapter(cfg, model, tokenizer, adapter_dir, run_dir, inputs, results, report)
    _wait_for_other_processes()
    return report


# ---------------------------------------------------------------------------------------------- data

def find_dataset(cfg: Config, dataset: Path | None) -> Path:
    found = Path(dataset) if dataset is not None else latest_artifact(cfg.datasets_dir)
    if found is None:
        raise TrainDataError(f"{cfg.datasets_dir}: no complete dataset yet; run `assistant synth` first "
                             "or pass --dataset DIR (a folder with train.jsonl and validation.jsonl)")
    if not (found / "train.jsonl").exists():
        raise TrainDataError(f"{found}: no train.jsonl here; pass --dataset with a folder written by `assistant synth`")
    return found


def read_pairs(path: Path) -> list[dict]:
    """The records of one JSONL file, each checked: messages that end with a non-empty assistant answer."""
    records = []
    for number, record in read_jsonl(path, TrainDataError):
        messages = record.get("messages") if isinstance(record, dict) else None
        if not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str) for m in messages)):
            raise TrainDataError(f'{path}:{number}: expected {{"messages": [{{"role": "system|user|assistant", '
                                 f'"content": "..."}}, ...]}}; fix the line or rebuild with `assistant synth`')
        if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
            raise TrainDataError(f"{path}:{number}: the last message must be a non-empty assistant answer")
        records.append(record)
    return records


def tokenize_pairs(records: list[dict], tokenizer, max_seq_len: int) -> tuple[list[dict], int]:
    """Token ids with labels on the answer only, and how many pairs were too long to keep.

    The prompt is rendered exactly as at answer time (template + generation prompt); the completion is
    the answer and the turn marker, so the model learns to stop. A pair longer than `max_seq_len` is
    dropped rather than cut, since cutting would remove the answer the loss is about.
    """
    if not records:          # an empty validation split (transformers' tokenizer fails on an empty batch)
        return [], 0
    prompts = [tokenizer.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
               for r in records]
    completions = [r["messages"][-1]["content"].strip() + END_OF_TURN for r in records]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    rows, too_long = [], 0
    for record, prompt, completion in zip(records, prompt_ids, completion_ids):
        if len(prompt) + len(completion) > max_seq_len:
            too_long += 1
            continue
        rows.append({"input_ids": prompt + completion, "labels": [IGNORE] * len(prompt) + completion,
                     "round": record.get("meta", {}).get("round", 0)})
    return rows, too_long


def read_dataset(dataset_dir: Path) -> dict[Path, list[dict]]:
    """The checked records of train.jsonl and validation.jsonl (which may be missing or empty)."""
    train, validation = dataset_dir / "train.jsonl", dataset_dir / "validation.jsonl"
    splits = {train: read_pairs(train), validation: read_pairs(validation) if validation.exists() else []}
    if not splits[train]:
        raise TrainDataError(f"{train}: no pairs; rebuild the dataset with `assistant synth`")
    return splits


def dataset_rows(splits: dict[Path, list[dict]], tokenizer, max_seq_len: int) -> tuple[list[dict], list[dict]]:
    """Train and validation rows (token ids and labels) of `read_dataset`'s records."""
    split_rows = []
    for path, records in splits.items():
        rows, too_long = tokenize_pairs(records, tokenizer, max_seq_len)
        if records and not rows:
            raise TrainDataError(f"{path}: every pair is longer than train.max_seq_len={max_seq_len} tokens; "
                                 "raise it (--max-seq-len) or use fewer context chunks per pair")
        if too_long:
            print(f"{path}: {too_long} of {len(records)} pairs exceed train.max_seq_len={max_seq_len} tokens "
                  "and are left out", file=sys.stderr)
        split_rows.append(rows)
    return split_rows[0], split_rows[1]


def pack_rows_in_rounds(rows: list[dict], max_seq_len: int, seed: int) -> list[dict]:
    """Packed rows that keep the dataset's phrasing rounds in order (`training.split.order_by_round`): every
    fact's first phrasing is trained before any second one, which matters when the time budget buys less
    than an epoch. Within a round the packs are shuffled (seeded); the Trainer then reads them in order."""
    rng = random.Random(seed)
    packs: list[dict] = []
    for number in sorted({row.get("round", 0) for row in rows}):
        group = pack_rows([row for row in rows if row.get("round", 0) == number], max_seq_len)
        rng.shuffle(group)
        packs.extend(group)
    return packs


def pack_rows(rows: list[dict], max_seq_len: int) -> list[dict]:
    """Best-fit decreasing: each sequence goes whole into the fullest row that still has room for it,
    so rows are nearly full and no pair is split. `seq_lengths` marks where each pair starts."""
    packs: list[dict] = []
    for row in sorted(rows, key=lambda r: len(r["input_ids"]), reverse=True):
        size = len(row["input_ids"])
        fits = [pack for pack in packs if max_seq_len - len(pack["input_ids"]) >= size]
        if fits:
            pack = max(fits, key=lambda p: len(p["input_ids"]))
        else:
            pack = {"input_ids": [], "labels": [], "seq_lengths": []}
            packs.append(pack)
        pack["input_ids"] += row["input_ids"]
        pack["labels"] += row["labels"]
        pack["seq_lengths"].append(size)
    return packs


def adapter_inputs(cfg: Config, dataset_dir: Path | None, stages: list) -> dict[str, str]:
    """Everything the adapter depends on, hashed: a change to any of these trains a new adapter."""
    base = base_model_path(cfg)
    weights = sorted(Path(base).glob("*.safetensors")) + [Path(base) / "config.json"] if Path(base).is_dir() else []
    inputs = {
        "base_model": sha256_files(weights) if weights else str(base),
        "train_config": sha256_json(cfg.train.model_dump(exclude={"run_minutes"})),
        "recipe": RECIPE_VERSION,
        "seed": str(cfg.seed),
    }
    if dataset_dir is not None:
        inputs["dataset"] = sha256_files(p for p in (dataset_dir / "train.jsonl", dataset_dir / "validation.jsonl")
                                         if p.exists())
    if cfg.train.objective.startswith("cpt"):
        inputs["corpus_chunks"] = sha256_json([row["input_ids"] for row in stages[0][1] + stages[0][2]])
    return inputs


def report_from_manifest(adapter_dir: Path) -> TrainReport:
    metrics = read_manifest(adapter_dir)["metrics"]
    return TrainReport(adapter=adapter_dir, train_loss=metrics.get("train_loss"), val_loss=metrics.get("val_loss"),
                       steps=metrics.get("steps", 0), tokens_per_s=metrics.get("tokens_per_s", 0.0),
                       stopped_early=metrics.get("stopped_early", False), seconds=0.0,
                       precision=metrics.get("precision", ""), tokens=metrics.get("tokens", 0),
                       exposures=metrics.get("exposures", 0.0), plan=metrics.get("plan", ""),
                       note="up to date: same dataset, base model and settings")


# ---------------------------------------------------------------------------------------------- model

def lora_model(cfg: Config, turn_rows: bool = True):
    """The base model with fresh LoRA adapters; 4-bit base weights with --qlora (CUDA only). `turn_rows=False`
    leaves out the trainable turn-token rows, for the benchmark against TRL's loss, which cannot train them."""
    import torch
    from peft import LoraConfig, get_peft_model

    if cfg.train.qlora:
        model = _load_4bit_model(cfg)
    else:
        # With bf16 the frozen weights are stored in bf16 outright: autocast would otherwise cast every fp32
        # weight again at every step (2x slower here). The LoRA weights PEFT adds stay fp32.
        model, _ = load_base_model(cfg, dtype="bfloat16" if use_bf16(cfg.train.bf16, "training") else "float32")
    model.config.use_cache = False
    targets = cfg.train.target_modules
    lora = LoraConfig(r=cfg.train.lora_r, lora_alpha=cfg.train.lora_alpha, lora_dropout=cfg.train.lora_dropout,
                      target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
                      trainable_token_indices=(turn_token_ids(load_tokenizer(cfg)) or None) if turn_rows else None,
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    cheap_turn_rows(model)
    return model


def cheap_turn_rows(model) -> None:
    """Train the turn-token rows without touching the other 262k: PEFT builds the whole embedding matrix
    with the rows swapped in at every forward (`index_copy`), so the backward of the tied head computes the
    gradient of all 262k x 640 weights, then keeps two rows. That was 23% of an fp32 training step on a
    2-core AVX2 EPYC (84 tokens/s against 109 without the rows). Here the base layer runs as it is and
    only the rows' own embeddings and logits are swapped in; values and gradients are the same."""
    from types import MethodType

    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    for module in model.modules():
        if isinstance(module, TrainableTokensLayer):
            module.forward = MethodType(_turn_rows_forward, module)


def _turn_rows_forward(self, x, *args, **kwargs):
    import torch

    if (self.disable_adapters or self.merged or len(self.active_adapters) != 1
            or not isinstance(self.base_layer, (torch.nn.Embedding, torch.nn.Linear))):
        return type(self).forward(self, x, *args, **kwargs)          # PEFT's own, and its errors
    adapter = self.active_adapters[0]
    index = torch.tensor(self.token_indices[adapter], device=x.device)
    delta = self.trainable_tokens_delta[adapter]
    out = self.base_layer(x, *args, **kwargs)
    if isinstance(self.base_layer, torch.nn.Embedding):
        slot = x[..., None] == index                                   # (..., rows): which trained row, if any
        rows = delta.to(out.dtype)[slot.int().argmax(-1)]
        scale = self._get_embed_scale()                                # Gemma scales its embeddings
        rows = rows * scale.to(out.dtype) if scale is not None else rows
        return torch.where(slot.any(-1, keepdim=True), rows, out)
    # The tied head: the trained rows' logits replace theirs. In place is safe: a linear layer keeps its
    # input and weight for the backward, not its output.
    out[..., index] = x @ delta.to(x.dtype).T
    return out


def turn_token_ids(tokenizer) -> list[int]:
    """The turn markers' ids, whose embedding rows are trained along with the LoRA weights.

    A base model never saw them: Gemma 3 270M's <end_of_turn> row is a near twin (cosine 0.995) of
    hundreds of unused tokens, so with the LoRA weights alone the tuned model ends an answer with one of
    those twins (it printed a cuneiform sign) and runs on instead of stopping. Two trained rows (tied to
    the LM head) give the model a marker it can actually say."""
    ids = [tokenizer.convert_tokens_to_ids(token) for token in ("<start_of_turn>", END_OF_TURN)]
    return [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]


def _load_4bit_model(cfg: Config):
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(base_model_path(cfg), quantization_config=quantization,
                                                 dtype=torch.bfloat16, device_map={"": 0})
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


# ---------------------------------------------------------------------------------------------- train

def train_stage(cfg: Config, model, tokenizer, name: str, train_rows: list[dict], val_rows: list[dict],
                stage_dir: Path, resume: bool, progress: bool, budget_s: float | None = None,
                callbacks: Sequence = ()) -> dict[str, Any]:
    """One TRL run on `model` in place; the best checkpoint (by validation loss) is what is left loaded."""
    from datasets import Dataset
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    done = stage_dir / "done"
    if resume and (done / "result.json").exists():   # this stage finished before the kill
        set_peft_model_state_dict(model, load_file(done / "adapter_model.safetensors"))
        return json.loads((done / "result.json").read_text())
    train_packs = pack_rows_in_rounds(train_rows, cfg.train.max_seq_len, cfg.seed)
    epoch_steps = math.ceil(math.ceil(len(train_packs) / cfg.train.batch_size) * cfg.train.epochs)
    args = training_arguments(cfg, stage_dir, has_validation=bool(val_rows), max_steps=epoch_steps)
    stopper = StopOnValidation(cfg.train.early_stopping_patience, cfg.train.overfit_evals)
    val_packs = pack_rows(val_rows, cfg.train.max_seq_len) if val_rows else []
    deadline = time.time() + budget_s if budget_s and not cfg.train.max_steps else None
    trainer = CompletionLossTrainer(
        model=model, args=args, processing_class=tokenizer, data_collator=PackedRowsCollator(tokenizer.pad_token_id),
        train_dataset=Dataset.from_list(train_packs),
        eval_dataset=Dataset.from_list(val_packs) if val_packs else None,
        callbacks=[stopper, *callbacks])
    # The step count: fixed (--max-steps), else what fits the time budget, never more than `epochs` passes.
    # A resumed run keeps the plan it started with, or its learning-rate schedule would change mid-way.
    plan_path = stage_dir / "plan.json"
    plan = json.loads(plan_path.read_text()) if resume and plan_path.exists() else None
    if plan is None:
        plan = plan_steps(cfg, trainer, train_packs, val_packs, epoch_steps, budget_s)
        stage_dir.mkdir(parents=True, exist_ok=True)
        plan_path.write_text(json.dumps(plan))
    # The loop is sized for every epoch; TimeBudget sets the planned count and may move it while training.
    trainer.args.max_steps = epoch_steps
    trainer.step_plan = plan
    budget = TimeBudget(deadline, plan, plan_path)
    trainer.add_callback(budget)                 # before the bar, which reads the planned count
    if progress:
        trainer.add_callback(ProgressBar(name))
    print(f"train ({name}): {plan['steps']} steps, {plan['why']}", file=sys.stderr, flush=True)
    checkpoints = _complete_checkpoints(stage_dir) if resume else []
    try:
        trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    except RuntimeError as err:
        if "out of memory" in str(err).lower() or "can't allocate memory" in str(err).lower():
            raise MemoryError(f"out of memory with train.batch_size={cfg.train.batch_size} and train.max_seq_len="
                              f"{cfg.train.max_seq_len}; lower one of them (nothing was written; checkpoints in "
                              f"{stage_dir} let --resume continue)") from err
        raise
    history = trainer.state.log_history
    result = {
        "stage": name, "steps": trainer.state.global_step, "history": history,
        "first_train_loss": next((round(e["loss"], 4) for e in history if "loss" in e), None),
        # the last logged training loss, else (a run shorter than logging_steps) the run's mean
        "train_loss": _last(history, "loss") or _last(history, "train_loss"),
        "val_loss": trainer.state.best_metric or _last(history, "eval_loss"),
        "best_step": _best_step(trainer.state.best_model_checkpoint),
        "tokens_per_s": trainer.tokens_per_second(), "train_pairs": len(train_rows), "val_pairs": len(val_rows),
        "plan": plan, "tokens": sum(trainer.step_tokens),
        # passes over the training set that the steps bought (the budget's currency for knowledge injection)
        "exposures": round(trainer.state.global_step * cfg.train.batch_size / max(1, len(train_packs)), 2),
        "stopped_early": stopper.reason is not None, "note": stopper.reason or budget.reason or "",
        "precision": precision_name(use_bf16(cfg.train.bf16, "training")),
        "is_main_process": trainer.accelerator.is_main_process,
    }
    if trainer.accelerator.is_main_process:
        model.save_pretrained(done)
        (done / "result.json").write_text(json.dumps(result, default=str))
    return result


def _complete_checkpoints(stage_dir: Path) -> list[Path]:
    """Checkpoints in step order; one a kill caught half-written (no trainer_state.json, saved last) is removed."""
    checkpoints = sorted(stage_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for partial in [p for p in checkpoints if not (p / "trainer_state.json").exists()]:
        shutil.rmtree(partial, ignore_errors=True)   # every process may try; one succeeds
        checkpoints.remove(partial)
    return checkpoints


def _sample(rows: list[dict], count: int, seed: int) -> list[dict]:
    return rows if len(rows) <= count else random.Random(seed).sample(rows, count)


def _last(history: list[dict], key: str) -> float | None:
    values = [entry[key] for entry in history if key in entry]
    return round(values[-1], 4) if values else None


def _best_step(checkpoint: str | None) -> int | None:
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None


def _wait_for_other_processes() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


# ---------------------------------------------------------------------------------------------- save

def save_adapter(cfg: Config, model, tokenizer, adapter_dir: Path, run_dir: Path, inputs: dict[str, str],
                 results: list[dict], report: TrainReport) -> None:
    from training.trainer import plot_losses

    with atomic_folder(adapter_dir) as out:
        model.save_pretrained(out)            # adapter_config.json + adapter_model.safetensors (PEFT, vLLM)
        plot_losses([r["history"] for r in results], [r["stage"] for r in results], out / "loss.png")
        for logs in sorted(run_dir.glob("*/runs")):
            shutil.copytree(logs, out / "tensorboard" / logs.parent.name, dirs_exist_ok=True)
        if cfg.train.merge:
            _save_merged(cfg, out)
        metrics = {**{k: v for k, v in report.to_dict().items() if k != "adapter"},
                   "stages": [{k: v for k, v in r.items() if k not in ("history", "is_main_process")} for r in results]}
        write_manifest(out, build_manifest(
            "adapter", inputs=inputs, config={"base_model": cfg.base_model, "train": cfg.train.model_dump()},
            seed=cfg.seed, metrics=metrics, extra={"base_model_path": str(base_model_path(cfg)),
                                                   "precision": report.precision, "hardware_note": hardware_note()}))
    shutil.rmtree(run_dir, ignore_errors=True)


def _save_merged(cfg: Config, adapter_dir: Path) -> None:
    """Base + adapter as one plain model, for servers without LoRA support; reloaded in full precision
    so that a 4-bit (QLoRA) training copy never ends up in the merged weights."""
    from peft import PeftModel

    base, tokenizer = load_base_model(cfg)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(adapter_dir / "merged")
    tokenizer.save_pretrained(adapter_dir / "merged")
