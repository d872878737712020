"""LoRA fine-tuning on the tiny random Gemma 3: the loss falls, adapters round-trip, a killed run
resumes to the same step count, CPT runs, bad datasets fail with the file and line.

    .venv/bin/pytest tests/training/test_sft.py -q
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from assistant.core.config import ConfigError
from assistant.core.errors import TrainDataError
from assistant.core.prompts import build_messages
from training.sft import dataset_rows, pack_rows, read_dataset, tokenize_pairs, train_adapter
from training.trainer import PackedRowsCollator, stop_reason

TINY_QUESTIONS = Path(__file__).parents[1] / "fixtures" / "tiny_questions.jsonl"

# Small and quick: rows of 192 tokens hold one or two pairs; lr high enough to move a random model.
TINY_TRAIN = {"epochs": 3, "batch_size": 4, "max_seq_len": 192, "eval_steps": 4, "learning_rate": 1e-2,
              "lora_dropout": 0.0, "early_stopping_patience": 50, "overfit_evals": 50, "max_steps": 0}


@pytest.fixture(scope="module")
def trainable_tiny_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its (tied) embeddings scaled up. At the default initialisation the logits
    span about +-1.3, so no adapter could push the loss far below ln(262144) = 12.5; LoRA cannot
    touch the embeddings or the norms that set that span."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.get_input_embeddings().weight.data *= 30
    target = tmp_path_factory.mktemp("trainable-tiny")
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(target)
    return target


@pytest.fixture()
def train_cfg(tiny_cfg, trainable_tiny_dir):
    tiny_cfg.base_model = str(trainable_tiny_dir)
    for key, value in TINY_TRAIN.items():
        setattr(tiny_cfg.train, key, value)
    return tiny_cfg


def write_pairs(folder: Path, copies: int = 3) -> Path:
    """The tiny corpus's held-out facts as question -> reference pairs, repeated so they can be memorised."""
    facts = [json.loads(line) for line in TINY_QUESTIONS.read_text().splitlines() if line.strip()]
    records = [{"messages": build_messages(f["question"]) + [{"role": "assistant", "content": f["reference"]}],
                "meta": {"type": "qa", "chunk_ids": [], "doc_id": f["source_ids"][0] if f["source_ids"] else None,
                         "question": f["question"]}}
               for f in facts]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records * copies))
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:4]))
    return folder


def test_answer_tokens_are_the_templates_generation_tokens(tiny_cfg, tmp_path):
    """Our prompt/completion split labels exactly what the chat template marks with {% generation %}."""
    from assistant.core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_cfg)
    dataset = write_pairs(tmp_path / "ds", copies=1)
    rows, _ = dataset_rows(read_dataset(dataset), tokenizer, 512)
    first = json.loads((dataset / "train.jsonl").read_text().splitlines()[0])
    rendered = tokenizer.apply_chat_template(first["messages"], tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=True)
    ids, mask = rendered["input_ids"], rendered["assistant_masks"]
    # The template adds one newline after <end_of_turn>; the completion stops at <end_of_turn>.
    assert rows[0]["input_ids"] == ids[:len(rows[0]["input_ids"])]
    assert [label != -100 for label in rows[0]["labels"]] == [bool(m) for m in mask[:len(rows[0]["labels"])]]


def test_packed_rows_attend_only_within_each_pair(tiny_cfg):
    """Two pairs packed in one row give the same logits as each pair alone (block-diagonal mask)."""
    from assistant.core.models import load_base_model

    model, _ = load_base_model(tiny_cfg)
    first, second = list(range(10, 40)), list(range(50, 70))
    rows = [{"input_ids": ids, "labels": ids} for ids in (first, second)]
    packed = PackedRowsCollator(pad_token_id=0)(pack_rows(rows, 64))
    assert packed["input_ids"].shape == (1, 50)
    with torch.no_grad():
        # use_cache=False as in training: with a cache, transformers does not look for packed sequences
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in (first, second)]
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-4, rtol=1e-4)


def test_stop_reason_tells_overfitting_from_a_plateau():
    rising = [{"step": 5, "loss": 2.0}, {"step": 5, "eval_loss": 1.0}, {"step": 10, "loss": 1.5},
              {"step": 10, "eval_loss": 1.1}, {"step": 15, "loss": 1.0}, {"step": 15, "eval_loss": 1.2}]
    assert stop_reason(rising, patience=5, overfit_evals=2).startswith("overfitting")
    flat = [{"step": s, "loss": 1.0} for s in (5, 10, 15)] + [{"step": 5, "eval_loss": 1.0},
                                                              {"step": 10, "eval_loss": 1.0}, {"step": 15, "eval_loss": 1.0}]
    assert stop_reason(flat, patience=2, overfit_evals=2).startswith("validation loss has not improved")
    assert stop_reason(rising[:4], patience=5, overfit_evals=2) is None


@pytest.mark.parametrize("content, expected", [
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n',
     "train.jsonl:2: not valid JSON"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', "train.jsonl:1: the last message must be"),
    ("", "train.jsonl: no pairs"),
])
def test_bad_datasets_name_the_file_and_line(tiny_cfg, tmp_path, content, expected):
    (tmp_path / "train.jsonl").write_text(content)
    with pytest.raises(TrainDataError, match=expected):
        train_adapter(tiny_cfg, tmp_path, progress=False)
    assert not tiny_cfg.adapters_dir.exists() or not any(tiny_cfg.adapters_dir.iterdir())


def test_a_missing_or_empty_validation_split_gives_no_validation_rows(tiny_cfg, tmp_path):
    from assistant.core.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_cfg)
    dataset = write_pairs(tmp_path / "ds", copies=1)
    for state in ("empty", "missing"):
        if state == "empty":
            (dataset / "validation.jsonl").write_text("")
        else:
            (dataset / "validation.jsonl").unlink()
        splits = read_dataset(dataset)
        assert splits[dataset / "validation.jsonl"] == []
        assert tokenize_pairs([], tokenizer, 512) == ([], 0)
        train, validation = dataset_rows(splits, tokenizer, 512)
        assert train and validation == []


def test_pairs_longer_than_max_seq_len_are_a_clear_error(tiny_cfg, tmp_path):
    dataset = write_pairs(tmp_path / "ds", copies=1)
    tiny_cfg.train.max_seq_len = 32
    with pytest.raises(TrainDataError, match="longer than train.max_seq_len=32"):
        train_adapter(tiny_cfg, dataset, progress=False)


def test_qlora_on_cpu_says_it_needs_cuda(tiny_cfg, tmp_path):
    tiny_cfg.train.qlora = True
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        train_adapter(tiny_cfg, write_pairs(tmp_path / "ds", copies=1), progress=False)


def test_loss_falls_and_the_adapter_is_complete_and_loads(train_cfg, tmp_path):
    from peft import PeftModel

    from assistant.core.models import load_base_model, load_tuned_model

    cfg = train_cfg
    dataset = write_pairs(tmp_path / "ds")
    report = train_adapter(cfg, dataset, progress=False)

    stage = json.loads((report.adapter / "manifest.json").read_text())["metrics"]["stages"][0]
    assert report.steps == stage["steps"] >= 6
    assert report.train_loss < stage["first_train_loss"] - 2.0
    assert report.val_loss is not None and report.tokens_per_s > 0
    for name in ("adapter_config.json", "adapter_model.safetensors", "manifest.json", "loss.png"):
        assert (report.adapter / name).exists(), name
    assert any((report.adapter / "tensorboard").rglob("events.out.tfevents.*"))
    assert not list(cfg.adapters_dir.glob(".*")), "scratch and checkpoint folders are cleared"

    # PEFT and our loader read it; the adapter changes the model's output.
    tuned, tokenizer = load_tuned_model(cfg, report.adapter)
    base, _ = load_base_model(cfg)
    again = PeftModel.from_pretrained(load_base_model(cfg)[0], str(report.adapter)).eval()
    ids = tokenizer("How much is a household membership?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(tuned(ids).logits, again(ids).logits)
        assert not torch.allclose(tuned(ids).logits, base(ids).logits)

    # An unchanged re-run is skipped.
    assert "up to date" in train_adapter(cfg, dataset, progress=False).note


def test_adapter_round_trip_gives_identical_logits(tiny_cfg, tmp_path):
    from assistant.core.models import load_tuned_model
    from training.sft import lora_model

    tiny_cfg.train.bf16 = False          # fp32 like load_tuned_model's default, so equal means bit for bit
    model = lora_model(tiny_cfg).eval()
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.05)   # B starts at zero, which would make any adapter look alike
    model.save_pretrained(tmp_path / "adapter")
    for layer in (m for m in model.modules() if "forward" in vars(m)):
        del layer.forward      # PEFT's own forward for the turn rows, as the loaded model runs (cheap_turn_rows)
    loaded, tokenizer = load_tuned_model(tiny_cfg, tmp_path / "adapter")
    ids = tokenizer("Which day is the shop open for youth builders?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_the_turn_rows_train_with_the_same_loss_and_gradients_as_peft_computes_them(tiny_cfg):
    """`cheap_turn_rows` swaps in the trained rows' embeddings and logits instead of rebuilding the whole
    262k-row matrix: the loss and every gradient are PEFT's own, with the turn tokens in the input and
    among the targets."""
    from assistant.core.answer_loss import IGNORE, answer_token_losses
    from assistant.core.models import load_tokenizer
    from training.sft import lora_model, turn_token_ids

    tiny_cfg.train.bf16, tiny_cfg.train.lora_dropout = False, 0.0
    model = lora_model(tiny_cfg)
    torch.manual_seed(2)
    for name, param in model.named_parameters():
        if "lora_B" in name or "trainable_tokens_delta" in name:
            param.data.normal_(0, 0.5)      # rows and adapters that differ from the base, so both matter
    turns = turn_token_ids(load_tokenizer(tiny_cfg))
    ids = torch.randint(0, 1000, (2, 48))
    ids[:, [3, 20]], ids[:, [30, 47]] = turns[0], turns[-1]
    labels = ids.clone()
    labels[:, :24] = IGNORE

    def loss_and_gradients():
        model.zero_grad(set_to_none=True)
        losses, _ = answer_token_losses(model, {"input_ids": ids, "use_cache": False}, labels)
        losses.mean().backward()
        return losses.mean().item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    layers = [m for m in model.modules() if type(m).__name__ == "TrainableTokensLayer"]
    assert len(layers) == 2 and all("forward" in vars(layer) for layer in layers)   # embedding and tied head
    cheap = loss_and_gradients()
    for layer in layers:
        del layer.forward                    # back to PEFT's forward
    peft = loss_and_gradients()
    assert cheap[0] == pytest.approx(peft[0], rel=1e-6) and cheap[1].keys() == peft[1].keys()
    assert any("trainable_tokens_delta" in name for name in peft[1])
    for name, gradient in peft[1].items():
        assert torch.allclose(cheap[1][name], gradient, rtol=1e-4, atol=1e-6), name


def test_a_killed_run_resumes_and_ends_at_the_same_step_count(train_cfg, tmp_path):
    cfg = train_cfg
    cfg.train.epochs, cfg.train.eval_steps = 4, 3
    dataset = write_pairs(tmp_path / "ds")
    env = {**os.environ, "ASSISTANT_WORKSPACE": str(cfg.workspace), "ASSISTANT_BASE_MODEL": cfg.base_model,
           "ASSISTANT_CORPUS": str(cfg.corpus), "ASSISTANT_MODEL_CACHE": str(cfg.model_cache),
           **{f"ASSISTANT_TRAIN__{k.upper()}": str(v) for k, v in {**TINY_TRAIN, "epochs": 4, "eval_steps": 3}.items()}}
    run = subprocess.Popen([sys.executable, "-m", "assistant", "train", "--dataset", str(dataset)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(cfg.adapters_dir.glob(".*.run/sft/checkpoint-*")) and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_at = [int(p.name.split("-")[1]) for p in cfg.adapters_dir.glob(".*.run/sft/checkpoint-*")]
    assert killed_at and not list(cfg.adapters_dir.glob("[!.]*")), "a killed run leaves no adapter behind"

    from assistant.core.models import load_tokenizer

    rows, _ = dataset_rows(read_dataset(dataset), load_tokenizer(cfg), cfg.train.max_seq_len)
    expected = math.ceil(len(pack_rows(rows, cfg.train.max_seq_len)) / cfg.train.batch_size) * 4
    assert max(killed_at) < expected
    report = train_adapter(cfg, dataset, resume=True, progress=False)
    assert report.steps == expected


def test_continued_pretraining_runs_on_the_corpus(train_cfg):
    cfg = train_cfg
    cfg.train.objective, cfg.train.epochs, cfg.train.max_seq_len = "cpt", 1, 128
    report = train_adapter(cfg, progress=False)
    manifest = json.loads((report.adapter / "manifest.json").read_text())
    assert report.steps > 0 and report.train_loss is not None
    assert "corpus_chunks" in manifest["inputs"] and "dataset" not in manifest["inputs"]


@pytest.mark.parametrize("processes", [1, 2])
def test_the_loss_on_answer_tokens_equals_trls_loss_on_the_same_batch(train_cfg, tmp_path, monkeypatch, processes):
    """compute_loss runs the LM head only where labels are; it must give TRL's value on the same packed batch,
    including the factor that undoes DDP's gradient averaging when tokens are counted over all processes."""
    from datasets import Dataset

    from assistant.core.models import load_tokenizer
    from training.sft import lora_model
    from training.trainer import CompletionLossTrainer, training_arguments

    train_cfg.train.bf16 = False
    tokenizer = load_tokenizer(train_cfg)
    rows, _ = dataset_rows(read_dataset(write_pairs(tmp_path / "ds", copies=1)), tokenizer, train_cfg.train.max_seq_len)
    packs = pack_rows(rows, train_cfg.train.max_seq_len)
    trainer = CompletionLossTrainer(
        model=lora_model(train_cfg, turn_rows=False), processing_class=tokenizer,     # TRL cannot train turn rows
        train_dataset=Dataset.from_list(packs),
        args=training_arguments(train_cfg, tmp_path / "out", has_validation=False, max_steps=1, save_strategy="no",
                                report_to=[]),
        data_collator=PackedRowsCollator(tokenizer.pad_token_id))
    batch = PackedRowsCollator(tokenizer.pad_token_id)(packs[:2])
    tokens = int((batch["labels"][:, 1:] != -100).sum())
    counted = None
    if processes > 1:       # this process holds half the batch's tokens; the other process the rest
        monkeypatch.setattr(type(trainer.accelerator), "num_processes", property(lambda self: processes))
        trainer.args.average_tokens_across_devices = True
        counted = torch.tensor(tokens * processes)
    trainer.model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=counted)
        trainer.loss_positions_only = False
        trls = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=counted)
    assert float(ours) == pytest.approx(float(trls), rel=1e-5)
