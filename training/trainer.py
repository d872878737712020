"""The SFTTrainer that `training/sft.py` runs: its arguments, its loss, and its callbacks.

    python -c "from training.trainer import stop_reason; help(stop_reason)"

The one change to TRL's loss: the LM head is run only at the positions whose next token carries
loss. Gemma's head maps 640 numbers to 262,144 logits; over a full packed row it is most of the
step, yet in an SFT pair only the answer tokens (a fifth of the row, often less) are scored.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from transformers import PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from assistant.core.answer_loss import IGNORE, answer_token_losses
from assistant.core.config import Config, ConfigError
from assistant.core.models import use_bf16



def training_arguments(cfg: Config, output_dir: Path, has_validation: bool, **overrides) -> SFTConfig:
    """Our defaults for TRL: bf16 autocast, packed rows without padding, validation and a checkpoint every
    `eval_steps`, the best checkpoint (by validation loss) loaded at the end."""
    from accelerate import PartialState

    processes = PartialState().num_processes
    if cfg.train.batch_size % processes:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} does not split over {processes} processes; "
                          f"pass --batch-size with a multiple of {processes}")
    per_process = cfg.train.batch_size // processes
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=cfg.train.epochs,
        per_device_train_batch_size=per_process,
        per_device_eval_batch_size=per_process,
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,                      # a ratio of all steps
        bf16=use_bf16(cfg.train.bf16, "training"),
        # memory is not the limit at this size; recomputation costs ~30% (transformers 5 renamed the setting)
        **({"activation_checkpointing": False} if "activation_checkpointing" in SFTConfig.__dataclass_fields__
           else {"gradient_checkpointing": False}),
        packing=False,                          # rows come packed already (sft.pack_rows), see PackedRowsCollator
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=cfg.train.max_seq_len,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=cfg.train.eval_steps,
        save_strategy="steps",
        save_steps=cfg.train.eval_steps,
        save_total_limit=2,                     # the best and the latest, for --resume
        load_best_model_at_end=has_validation,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        prediction_loss_only=True,
        logging_steps=max(1, cfg.train.eval_steps // 5),
        report_to=["tensorboard"],
        disable_tqdm=True,                      # our own bar shows loss, validation loss and ETA
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        # the packs come in phrasing rounds (sft.pack_rows_in_rounds), already shuffled within each round
        train_sampling_strategy="sequential",
    )
    return SFTConfig(**{**settings, **overrides})


class CompletionLossTrainer(SFTTrainer):
    """TRL's SFTTrainer, with the LM head and the loss computed only where labels are, and its own
    training steps timed (tokens/s). `loss_positions_only=False` keeps TRL's loss, for the benchmark."""

    def __init__(self, *args, loss_positions_only: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_positions_only = loss_positions_only
        self.step_plan: dict | None = None      # set by sft.train_stage; TimeBudget may move plan["steps"]
        self.step_tokens: list[int] = []
        self.step_seconds: list[float] = []
        self.remove_callback(PrinterCallback)   # it prints every log dict on stdout, which --json owns

    def training_step(self, model, inputs, num_items_in_batch=None):
        tokens = int((inputs["input_ids"] != self.processing_class.pad_token_id).sum())
        start = time.perf_counter()
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_seconds.append(time.perf_counter() - start)
        self.step_tokens.append(tokens)
        return loss

    def tokens_per_second(self) -> float:
        """Real (unpadded) tokens per second over all processes; the first step, which pays for
        allocations and kernel selection, is left out when there are others."""
        skip = 1 if len(self.step_seconds) > 1 else 0
        seconds = sum(self.step_seconds[skip:])
        per_process = sum(self.step_tokens[skip:]) / seconds if seconds else 0.0
        return round(per_process * self.accelerator.num_processes, 1)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Warm-up, then cosine decay to zero at the *planned* last step, read at every step: when the time
        budget re-plans the step count (TimeBudget), the decay stretches or shrinks to end with training."""
        if self.lr_scheduler is not None or self.step_plan is None:
            return super().create_scheduler(num_training_steps, optimizer)
        plan = self.step_plan
        warmup = self.args.get_warmup_steps(plan["steps"])          # fixed by the first plan

        def factor(step: int) -> float:
            if step < warmup:
                return step / max(1, warmup)
            progress = min(1.0, (step - warmup) / max(1, plan["steps"] - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, factor)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.loss_positions_only or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        losses, _ = answer_token_losses(model, {**model_inputs, "use_cache": False}, inputs["labels"])
        loss = losses.sum()
        # Same normalisation as TRL: by the tokens of the whole (possibly multi-process) batch.
        count = losses.numel() if num_items_in_batch is None else num_items_in_batch
        loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes             # DDP averages the gradients again
        return loss


class PackedRowsCollator:
    """Packed rows -> (rows, longest row) tensors, with position ids that restart at each pair and no
    attention mask: transformers then builds a block-diagonal causal mask per row, so packed pairs never
    see each other. TRL's padding-free batches flatten the whole batch into one row instead, which
    suits varlen flash attention on a GPU but makes CPU attention quadratic in the batch (8 x 512 tokens).
    The model must run with use_cache=False: with a cache, transformers does not look for packed pairs."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(example["input_ids"]) for example in examples)
        input_ids = torch.full((len(examples), longest), self.pad_token_id)
        labels = torch.full((len(examples), longest), IGNORE)
        position_ids = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, example in enumerate(examples):
            used = len(example["input_ids"])
            input_ids[row, :used] = torch.tensor(example["input_ids"])
            labels[row, :used] = torch.tensor(example["labels"])
            # the padding after the last pair counts as one more sequence, so it stays out of every pair's mask
            position_ids[row] = torch.cat([torch.arange(n) for n in [*example["seq_lengths"], longest - used]])
        labels[position_ids == 0] = IGNORE     # a pair's first token is not predicted from the previous pair
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def stop_reason(history: list[dict], patience: int, overfit_evals: int) -> str | None:
    """Why training should stop now, from the Trainer's log history, or None.

    Overfitting: validation loss rose at each of the last `overfit_evals` evaluations while the
    training loss fell over the same steps. Plateau: no new best validation loss for `patience` evaluations.
    """
    evals = [(entry["step"], entry["eval_loss"]) for entry in history if "eval_loss" in entry]
    trains = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
    if len(evals) > overfit_evals and trains:
        window = evals[-overfit_evals - 1:]
        rising = all(later[1] > earlier[1] for earlier, later in zip(window, window[1:]))
        before = [loss for step, loss in trains if step <= window[0][0]]
        if rising and before and trains[-1][1] < before[-1]:
            return (f"overfitting: validation loss rose {overfit_evals} evaluations in a row "
                    f"({window[0][1]:.3f} -> {window[-1][1]:.3f}) while training loss fell "
                    f"({before[-1]:.3f} -> {trains[-1][1]:.3f}); stopped at step {evals[-1][0]}, keeping the best checkpoint")
    if evals:
        best = min(range(len(evals)), key=lambda i: evals[i][1])
        if len(evals) - 1 - best >= patience:
            return (f"validation loss has not improved for {patience} evaluations (best {evals[best][1]:.3f} "
                    f"at step {evals[best][0]}); stopped at step {evals[-1][0]}, keeping the best checkpoint")
    return None


class StopOnValidation(TrainerCallback):
    """Early stopping on validation loss, with the overfitting guard; `reason` says why it stopped."""

    def __init__(self, patience: int, overfit_evals: int):
        self.patience = patience
        self.overfit_evals = overfit_evals
        self.reason: str | None = None

    def on_evaluate(self, args, state, control, **kwargs):
        self.reason = stop_reason(state.log_history, self.patience, self.overfit_evals)
        if self.reason:
            control.should_training_stop = True
            if state.is_world_process_zero:
                print(f"\n{self.reason}", file=sys.stderr)


def plan_steps(cfg: Config, trainer: CompletionLossTrainer, train_packs: list[dict], val_packs: list[dict],
               epoch_steps: int, budget_s: float | None) -> dict:
    """How many optimizer steps to run, and why: --max-steps, else what fits `budget_s` (timed on this
    machine, validation passes and checkpoints counted), never more than `epochs` passes."""
    if cfg.train.max_steps:
        steps = min(epoch_steps, cfg.train.max_steps)
        return {"steps": steps, "why": f"fixed by train.max_steps={cfg.train.max_steps}", "epoch_steps": epoch_steps}
    if not budget_s:
        return {"steps": epoch_steps, "why": f"{cfg.train.epochs:g} epochs, no time budget", "epoch_steps": epoch_steps}
    started = time.perf_counter()
    step_s = time_training_step(trainer, train_packs)
    # A validation pass runs forward only (about a third of a training step per row), plus a checkpoint.
    eval_s = 0.35 * step_s * len(val_packs) / max(1, cfg.train.batch_size) + 2.0
    per_step = step_s + (eval_s / cfg.train.eval_steps if val_packs else 0.0)
    usable = 0.95 * budget_s - (time.perf_counter() - started)
    fits = int(usable / per_step)
    floor = min(epoch_steps, cfg.train.min_steps)
    steps = max(1, floor, min(epoch_steps, fits))
    passes = f"({'all ' if steps == epoch_steps else ''}{cfg.train.epochs * steps / epoch_steps:.2f} passes over the training set)"
    plan = {"steps": steps, "step_s": round(step_s, 2), "budget_s": round(budget_s, 1), "epoch_steps": epoch_steps,
            "epochs": cfg.train.epochs, "eval_s_per_step": round(per_step - step_s, 3), "min_steps": floor,
            "why": (f"{steps * per_step / 60:.1f} of a {budget_s / 60:.1f}-minute budget at {step_s:.1f} s per step {passes}"
                    if steps > floor or fits >= floor else
                    f"train.min_steps={cfg.train.min_steps}, {steps * per_step / 60:.1f} minutes at {step_s:.1f} s per step: "
                    f"the {budget_s / 60:.1f}-minute budget fits only {max(fits, 0)} {passes}")}
    if trainer.accelerator.num_processes > 1:   # every process must run the same number of steps
        from accelerate.utils import broadcast_object_list

        plan = broadcast_object_list([plan])[0]
    return plan


def time_training_step(trainer: CompletionLossTrainer, packs: list[dict], repeats: int = 2) -> float:
    """Seconds for one optimizer step's forward and backward on real rows (the first, warm-up, not counted).
    No optimizer step is taken and the gradients are cleared, so the model is exactly as before."""
    batch_size = trainer.args.per_device_train_batch_size
    model = trainer.model
    model.train()
    times = []
    for number in range(repeats + 1):
        rows = [packs[(number * batch_size + i) % len(packs)] for i in range(batch_size)]
        inputs = trainer.data_collator(rows)
        start = time.perf_counter()
        with trainer.accelerator.autocast():
            loss = trainer.compute_loss(model, inputs)
        loss.backward()
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return sum(times[1:]) / repeats


class TimeBudget(TrainerCallback):
    """Keeps training inside its time budget. The first plan (plan_steps) comes from two timed steps,
    which a busy machine can make look slow: on a fresh clone whose CPU was shared while it planned, it
    bought 22 steps and training then ended in 283 s of a 700-s budget. So every `every` steps the count
    is planned again from the pace training actually ran at (validation passes and checkpoints
    included) and written back to `plan` (and plan.json, for --resume); the learning-rate decay follows
    it (CompletionLossTrainer.create_scheduler). Past the deadline, training stops after the step in
    flight, but never before the plan's `min_steps`. Single-process only: processes that stopped at
    different steps would wait for each other."""

    def __init__(self, deadline: float | None, plan: dict, plan_path: Path | None = None, every: int = 5):
        self.deadline = deadline
        self.plan = plan
        self.plan_path = plan_path
        self.every = every
        self.reason: str | None = None
        self.began: tuple[float, int] | None = None     # (time, step) when this process started training

    def on_train_begin(self, args, state, control, **kwargs):
        state.max_steps = self.plan["steps"]
        self.began = (time.time(), state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if not self.deadline or args.world_size != 1:
            return
        now = time.time()
        floor = self.plan.get("min_steps", 0)
        if now > self.deadline and state.global_step >= floor:
            self.reason = f"time budget reached at step {state.global_step} of {state.max_steps}"
            control.should_training_stop = True
            control.should_save = True
            return
        done = state.global_step - self.began[1]
        if done < self.every or state.global_step % self.every or state.global_step >= self.plan["steps"]:
            return
        # Seconds per step so far; before the first validation pass, plus the plan's estimate of its share.
        pace = (now - self.began[0]) / done
        if not any("eval_loss" in entry for entry in state.log_history):
            pace += self.plan.get("eval_s_per_step", 0.0)
        fits = state.global_step + int((self.deadline - 0.05 * self.plan["budget_s"] - now) / pace)
        steps = max(state.global_step + 1, floor, min(self.plan["epoch_steps"], fits))
        if abs(steps - self.plan["steps"]) < max(2, 0.1 * self.plan["steps"]):
            return
        print(f"\ntrain: re-planned {self.plan['steps']} -> {steps} steps at the {pace:.1f} s per step seen so far",
              file=sys.stderr, flush=True)
        self.plan.update(steps=steps, step_s=round(pace, 2), replanned=self.plan.get("replanned", 0) + 1,
                         why=f"{steps} steps fit the {self.plan['budget_s'] / 60:.1f}-minute budget at the "
                             f"{pace:.1f} s per step training ran at ({self.plan.get('epochs', 1) * steps / self.plan['epoch_steps']:.2f} "
                             "passes over the training set)")
        state.max_steps = steps
        if self.plan_path is not None:
            self.plan_path.write_text(json.dumps(self.plan))


class ProgressBar(TrainerCallback):
    """A tqdm bar on stderr: steps, ETA, the latest training and validation loss."""

    def __init__(self, stage: str):
        self.stage = stage
        self.bar = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=f"train ({self.stage})",
                            unit="step", file=sys.stderr, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            if self.bar.total != state.max_steps:       # the time budget re-planned the step count
                self.bar.total = state.max_steps
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        for key, label in (("loss", "loss"), ("eval_loss", "val")):
            if key in logs:
                self.postfix[label] = f"{logs[key]:.3f}"
        self.bar.set_postfix(self.postfix)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


def plot_losses(histories: list[list[dict]], stages: list[str], path: Path) -> None:
    """Training and validation loss against the step, one pair of curves per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    offset = 0
    for history, stage in zip(histories, stages):
        for key, style in (("loss", "-"), ("eval_loss", "o--")):
            points = [(entry["step"] + offset, entry[key]) for entry in history if key in entry]
            if points:
                axes.plot(*zip(*points), style, label=f"{stage} {'validation' if key == 'eval_loss' else 'training'}")
        offset += max((entry.get("step", 0) for entry in history), default=0)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (answer tokens)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
