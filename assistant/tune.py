"""Hyperparameters chosen by evaluation: an Optuna study over training and data-mix settings.

    assistant tune                                   # 6 trials, 30 minutes of training in all
    assistant tune --trials 12 --budget-minutes 60 --space space.toml --json

Read top to bottom: 1. the study, in SQLite under `<workspace>/tunes/<id>/`, whose id hashes everything
the trials depend on, so the same command run again resumes it: finished trials are kept, and a trial a
kill caught half-way is marked failed and run again with the same settings (its training resumes from
its last checkpoint); 2. the trials: the first trains the configured settings (the baseline), the
others what TPE suggests; each builds or reuses the dataset of its data mix, trains a normal adapter
within its share of the budget while the pruner watches its validation loss, then answers a sample of
the synthetic validation split on offline and hybrid; 3. the held-out questions, scored once, for the
best trial and the configured settings, with paired intervals; 4. the report, the plots and the best
settings as an `assistant.toml` (`assistant/tune_report.py`).
"""
from __future__ import annotations

import contextlib
import fcntl
import gc
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.core.config import Config, ConfigError
from assistant.core.errors import UserError
from assistant.core.manifest import read_manifest, sha256_json, write_manifest
from assistant.core.modes import Mode
from assistant.tune_space import Knob, apply_params, configured_value, load_space, suggest

TUNED_MODES = tuple(mode for mode in Mode if mode.tuned)
# Validation loss only orders trials whose accuracy ties: at 1e-4 a loss of 5 weighs 0.0005, below one
# key fact in a thousand.
LOSS_TIE_BREAK = 1e-4


class TuneError(UserError):
    """The study cannot give a result; the message names its folder and what to do."""


@dataclass
class TuneReport:
    folder: Path
    summary: dict

    def to_dict(self) -> dict:
        return {"report": str(self.folder / "report.md"), "folder": str(self.folder),
                "settings": str(self.folder / "assistant.toml"), **self.summary}


def tune(cfg: Config, space_path: Path | None = None, progress: bool = True) -> TuneReport:
    import optuna

    from assistant.tune_report import write_tune_report

    # 1. the study: same inputs, same folder, same study
    space = load_space(space_path, cfg)
    index = _ensure_index(cfg, progress)
    inputs = {"index": index, "config": sha256_json(cfg.model_dump(mode="json", exclude={"api_key"})),
              "space": sha256_json({name: knob.model_dump() for name, knob in space.items()})}
    folder = cfg.home / "tunes" / sha256_json(inputs)[:12]
    with _study_lock(folder):
        study = _open_study(cfg, folder)
        _requeue_killed_trials(study)
        if not study.trials:
            study.enqueue_trial({name: configured_value(cfg, name) for name in space}, user_attrs={"defaults": True})

        # 2. the trials that are left; the report is rewritten after each, so a killed tune still has one
        def after_trial(study, trial) -> None:
            _print_trial(trial, cfg.tune.trials)
            write_tune_report(cfg, study, space, folder, inputs, heldout=None)

        left = cfg.tune.trials - len(_finished(study))
        if left > 0:
            study.optimize(lambda trial: run_trial(trial, cfg, space, folder, progress), n_trials=left,
                           callbacks=[after_trial])

        # 3. held-out, once, for the best trial beside the configured settings; 4. the report
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            raise TuneError(f"{folder}: no trial finished (all pruned or failed); see the errors above, then run "
                            "the same command to try again")
        heldout = compare_on_heldout(cfg, study, space, folder, progress)
        summary = write_tune_report(cfg, study, space, folder, inputs, heldout)
    _make_newest(cfg, Path(study.best_trial.user_attrs["adapter"]))
    return TuneReport(folder, summary)


# ---------------------------------------------------------------------------------------------- study

def _ensure_index(cfg: Config, progress: bool) -> str:
    """The index every trial reads (built once, when there is none), by its fingerprint."""
    from indexing.store import IndexNotFound, build_index, index_fingerprint

    try:
        return index_fingerprint(cfg)
    except IndexNotFound:
        print(f"assistant tune: no index at {cfg.kb_dir}; building it from {cfg.corpus} first", file=sys.stderr)
        build_index(cfg, progress=progress)
        return index_fingerprint(cfg)


@contextlib.contextmanager
def _study_lock(folder: Path) -> Iterator[None]:
    """One tune per study at a time: with the lock held, a trial still marked running was left by a kill."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{folder}: another `assistant tune` is running this study; wait for it to end "
                              "(or stop it, then run the same command to resume)") from None
        yield


def _open_study(cfg: Config, folder: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)   # our own line per trial says what matters
    # Direction maximise: the objective is key-fact accuracy, and the pruner is fed minus validation loss.
    study = optuna.create_study(
        study_name=folder.name, storage=f"sqlite:///{folder / 'study.db'}", load_if_exists=True,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=cfg.tune.pruner_startup_trials,
                                           n_warmup_steps=cfg.tune.pruner_warmup_steps))
    # Seeded by the trials already run: a resumed study seeded as at its start would draw the same random
    # startup settings again.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials),
                                               n_startup_trials=cfg.tune.sampler_startup_trials)
    return study


def _requeue_killed_trials(study) -> None:
    """Trials a kill left 'running', or an interrupt or error failed, run again with the same settings, once
    per resume; a trial still marked running is failed first (with the lock held, no other process runs it)."""
    from optuna.trial import TrialState

    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if trial.number in retried:
            continue
        if trial.state == TrialState.RUNNING:
            # The storage API takes the trial's database id, which Optuna keeps on the frozen trial.
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        print(f"assistant tune: trial {trial.number} was stopped mid-way; it is marked failed and runs again "
              "with the same settings", file=sys.stderr)
        marks = {"defaults": True} if trial.user_attrs.get("defaults") else {}
        study.enqueue_trial(trial.params, user_attrs={**marks, "retry_of": trial.number})


def _finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _print_trial(trial, total: int) -> None:
    value = "" if trial.value is None else f"  validation key facts {100 * trial.user_attrs.get('accuracy', 0):.1f}"
    print(f"trial {trial.number + 1} of {total}: {trial.state.name.lower()}{value}  "
          f"({trial.user_attrs.get('seconds', 0) / 60:.1f} min)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- trials

def trial_config(cfg: Config, params: dict) -> Config:
    """The configured settings with the trial's in place, training for its share of the budget (a hard
    share: no step floor, or the trials together would overrun the tune's budget)."""
    share = cfg.tune.budget_minutes / cfg.tune.trials
    return apply_params(cfg, params, train={"budget_minutes": share, "eval_steps": cfg.tune.eval_steps, "min_steps": 0})


def run_trial(trial, cfg: Config, space: dict[str, Knob], folder: Path, progress: bool) -> float:
    """Dataset for the trial's mix -> adapter (pruned on validation loss) -> validation key-fact accuracy."""
    import optuna

    from training.dataset import build_dataset
    from training.sft import train_adapter

    started = time.perf_counter()
    trial_cfg = trial_config(cfg, suggest(trial, space))
    dataset = build_dataset(trial_cfg, progress=progress).dataset     # reused when an earlier trial had this mix
    trial.set_user_attr("dataset", dataset.name)
    runs_before = set(trial_cfg.adapters_dir.glob(".*.run"))
    try:
        trained = train_adapter(trial_cfg, dataset=dataset, resume=True, progress=progress,
                                callbacks=[_pruning_callback(trial)])
    except optuna.TrialPruned:
        # A pruned trial leaves no adapter, and its checkpoints would only fill the disk. (A killed or failed
        # trial keeps them: its retry, with the same settings, resumes from them.)
        for run_dir in set(trial_cfg.adapters_dir.glob(".*.run")) - runs_before:
            shutil.rmtree(run_dir, ignore_errors=True)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        raise
    _tag_adapter(trained.adapter, folder.name, trial.number)
    scores = score_validation(trial_cfg, trained.adapter, dataset, folder, progress)
    accuracy = _mean([scores[mode]["key_fact_accuracy"]["mean"] for mode in TUNED_MODES])
    attrs = {"adapter": str(trained.adapter), "accuracy": accuracy, "val_loss": trained.val_loss,
             "train_loss": trained.train_loss, "steps": trained.steps, "scores": scores,
             "seconds": round(time.perf_counter() - started, 1)}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return accuracy - LOSS_TIE_BREAK * (trained.val_loss or 0.0)


def _pruning_callback(trial):
    """Reports minus the validation loss at each evaluation; stops the trial when the pruner says so."""
    import optuna
    from transformers import TrainerCallback

    class PruneOnValidationLoss(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            trial.report(-loss, state.global_step)
            if trial.should_prune():
                trial.set_user_attr("val_loss", round(loss, 4))
                trial.set_user_attr("steps", state.global_step)
                raise optuna.TrialPruned(f"validation loss {loss:.3f} at step {state.global_step} is below the "
                                         "median of the finished trials at that step")

    return PruneOnValidationLoss()


def _tag_adapter(adapter: Path, study: str, number: int) -> None:
    """The adapter's manifest names the tune and the trials that gave it (a trial whose settings equal an earlier
    one's reuses its adapter), so it can be found, served or compared."""
    manifest = read_manifest(adapter)
    earlier = manifest.get("tune", {})
    trials = earlier.get("trials", []) if earlier.get("study") == study else []
    manifest["tune"] = {"study": study, "trials": sorted({*trials, number})}
    write_manifest(adapter, manifest)


# ---------------------------------------------------------------------------------------------- scoring

def score_validation(cfg: Config, adapter: Path, dataset: Path, folder: Path, progress: bool) -> dict:
    """Key-fact accuracy (and refusals) of the tuned paths on a seeded sample of the dataset's validation split."""
    from eval.questions import read_validation_questions

    questions = read_validation_questions(dataset / "validation.jsonl") if (dataset / "validation.jsonl").exists() else []
    if len(questions) > cfg.tune.validation_questions:
        questions = random.Random(cfg.seed).sample(questions, cfg.tune.validation_questions)
    rows = answer_and_score(cfg, adapter, questions, TUNED_MODES, folder / ".answers.jsonl", progress)
    return summarise_rows(cfg, rows)


def answer_and_score(cfg: Config, adapter: Path, questions: Sequence, modes: Sequence[str], cache: Path,
                     progress: bool) -> list[dict]:
    """One row per (question, path): the evaluation's own answering (cached) and key-fact and refusal metrics."""
    from assistant.answer import Assistant
    from eval.metrics import Sample, key_fact_accuracy, refusal, score_sample
    from eval.paths import answer_all, answer_settings
    from indexing.store import index_fingerprint

    if not questions:
        return []
    assistant = Assistant(cfg, adapter=adapter)
    answers = answer_all(assistant, questions, modes, settings=answer_settings(cfg, adapter.name, index_fingerprint(cfg)),
                         cache_path=cache, batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens,
                         progress=progress)
    del assistant
    gc.collect()      # one model at a time: the next trial loads its own
    by_id = {q.id: q for q in questions}
    rows = []
    for answer in answers:
        question = by_id[answer.question_id]
        values, _ = score_sample(Sample(question, answer.mode, answer.answer, answer.contexts), [key_fact_accuracy, refusal])
        # as in the evaluation: unanswerable questions count by refusing, the others by their key facts
        values["domain_score"] = values["refusal"] if question.unanswerable else values["key_fact_accuracy"]
        rows.append({"question_id": question.id, "mode": answer.mode, **values})
    return rows


def summarise_rows(cfg: Config, rows: list[dict]) -> dict:
    from eval import stats

    return stats.summarise_paths(rows, sorted({r["mode"] for r in rows}) or TUNED_MODES,
                                 ["key_fact_accuracy", "refusal", "domain_score"], cfg.eval.bootstrap_samples, cfg.seed)


def _mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else 0.0


# ---------------------------------------------------------------------------------------------- held-out

def compare_on_heldout(cfg: Config, study, space: dict[str, Knob], folder: Path, progress: bool) -> dict:
    """The best trial and the configured settings on the held-out questions, once, with paired intervals."""
    from eval import stats
    from eval.evaluate import choose_questions

    best = study.best_trial
    defaults = _defaults_adapter(cfg, study, space, progress)
    source = choose_questions(cfg, None)
    questions = source.questions[:cfg.eval.limit] if cfg.eval.limit else source.questions
    cache = folder / ".answers.jsonl"
    best_rows = answer_and_score(cfg, Path(best.user_attrs["adapter"]), questions, TUNED_MODES, cache, progress)
    result = {"questions": str(source.path), "n": len(questions), "best_trial": best.number,
              "best_adapter": best.user_attrs["adapter"], "defaults_adapter": str(defaults),
              "best": summarise_rows(cfg, best_rows)}
    if Path(best.user_attrs["adapter"]) == defaults:
        result["note"] = "The configured settings were the best trial: nothing else to compare on the held-out set."
        return result
    default_rows = answer_and_score(cfg, defaults, questions, TUNED_MODES, cache, progress)
    result["defaults"] = summarise_rows(cfg, default_rows)
    result["differences"] = {}
    for mode in TUNED_MODES:
        result["differences"][mode] = {}
        for metric in ("key_fact_accuracy", "domain_score"):
            difference = stats.paired_difference(stats.values_by_question(best_rows, mode, metric),
                                                 stats.values_by_question(default_rows, mode, metric),
                                                 cfg.eval.bootstrap_samples, cfg.seed)
            result["differences"][mode][metric] = {**difference.to_dict(),
                                                   "verdict": stats.verdict(f"best trial ({mode})", f"defaults ({mode})",
                                                                            difference)}
    return result


def _defaults_adapter(cfg: Config, study, space: dict[str, Knob], progress: bool) -> Path:
    """The adapter of the configured settings at a trial's budget: the first trial's, else trained now
    (the same inputs give the same adapter, so one already trained is found, not retrained)."""
    from optuna.trial import TrialState

    from training.dataset import build_dataset
    from training.sft import train_adapter

    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("defaults"):
            return Path(trial.user_attrs["adapter"])
    defaults_cfg = trial_config(cfg, {name: configured_value(cfg, name) for name in space})
    dataset = build_dataset(defaults_cfg, progress=progress).dataset
    return train_adapter(defaults_cfg, dataset=dataset, resume=True, progress=progress).adapter


def _make_newest(cfg: Config, best_adapter: Path) -> None:
    """After the tune, `assistant train` picks the configured settings' dataset again, and `assistant chat`
    and `eval` serve the best trial's adapter (both pick the newest)."""
    import os

    from training.dataset import build_dataset

    build_dataset(cfg, progress=False)
    os.utime(best_adapter / "manifest.json")
