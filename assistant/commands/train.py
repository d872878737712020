"""assistant train: LoRA-tune the base model on the newest dataset (TRL SFTTrainer + PEFT).

    assistant train
    assistant train --dataset workspace/finance/datasets/<id> --epochs 2 --learning-rate 1e-4 --json
    assistant train --objective cpt+sft --merge
    assistant train --resume                  # continue a killed run from its last checkpoint
    accelerate launch --config_file training/accelerate/ddp_cpu.yaml -m assistant train   # several processes
"""
from __future__ import annotations

from pathlib import Path

HELP = "LoRA fine-tuning of the base model on the synthesised pairs (or the corpus, --objective cpt)."


def add_arguments(parser):
    parser.add_argument("--dataset", type=Path, help="Dataset folder with train.jsonl and validation.jsonl "
                                                     "(default: the newest under the workspace).")
    parser.add_argument("--objective", dest="train.objective", choices=("sft", "cpt", "cpt+sft"),
                        help="Pairs (sft), next-token training on the corpus chunks (cpt), or CPT then SFT.")
    parser.add_argument("--epochs", dest="train.epochs", type=float, help="Passes over the training set.")
    parser.add_argument("--learning-rate", dest="train.learning_rate", type=float, help="Peak learning rate.")
    parser.add_argument("--budget-minutes", dest="train.budget_minutes", type=float, metavar="M",
                        help="Training time budget: the first steps are timed and the step count set to fit (default 12; 0: no budget).")
    parser.add_argument("--max-steps", dest="train.max_steps", type=int,
                        help="A fixed number of optimizer steps instead of the time budget (0: the budget decides).")
    parser.add_argument("--min-steps", dest="train.min_steps", type=int, metavar="N",
                        help="The fewest steps a time budget plans, even past it (default 30: shorter trainings are noisy; 0: the budget alone).")
    parser.add_argument("--lora-r", dest="train.lora_r", type=int, help="LoRA rank.")
    parser.add_argument("--batch-size", dest="train.batch_size", type=int, help="Packed rows per optimizer step.")
    parser.add_argument("--max-seq-len", dest="train.max_seq_len", type=int, help="Tokens per packed row.")
    parser.add_argument("--resume", action="store_true", help="Continue from the last checkpoint of the same run.")
    parser.add_argument("--merge", dest="train.merge", action="store_const", const=True,
                        help="Also write the adapter merged into the base weights (merged/).")
    parser.add_argument("--qlora", dest="train.qlora", action="store_const", const=True,
                        help="4-bit base weights with bitsandbytes (CUDA only).")


def run(args, cfg):
    from assistant.cli import emit
    from training.sft import train_adapter

    report = train_adapter(cfg, dataset=args.dataset, resume=args.resume, progress=True)
    result = {key: value for key, value in report.to_dict().items()
              if key in ("adapter", "train_loss", "val_loss", "steps", "tokens_per_s", "stopped_early", "precision",
                         "tokens", "exposures", "plan")}
    lines = [f"adapter     {report.adapter}",
             f"steps       {report.steps}   ({report.seconds:.0f} s, {report.tokens_per_s:.0f} tokens/s, {report.precision})",
             f"bought      {report.tokens:,} tokens, {report.exposures:.2f} passes over the training set ({report.plan})",
             f"loss        train {report.train_loss}   validation {report.val_loss}"]
    if report.note:
        lines.append(f"note        {report.note}")
    if "auto" in (cfg.answer.refusal_floor, cfg.answer.retrieval_gate) and cfg.answer.backend == "hf":
        # measured now so that `assistant chat` refuses as the evaluation will (eval.refusal_calibration)
        from assistant.answer import Assistant
        from eval.refusal_calibration import calibrate, describe

        floor = calibrate(cfg, Assistant(cfg, Path(report.adapter)), progress=True)
        if floor:
            result["refusal_floor"] = floor
            lines.append(f"refusals    {describe(floor)}")
    emit(args, result, "\n".join(lines))
    return 0
