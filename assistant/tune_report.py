"""The report of `assistant tune`: trials table, Optuna's importance and history plots, the held-out
comparison, and the best settings as an `assistant.toml`; written into the study's folder.

    python -c "from assistant.core.config import load_config; from assistant.tune_report import latest_tune; print(latest_tune(load_config())[0])"

Blocks are rendered by the evaluation report's Markdown renderer (`eval/report.py`), so both read alike.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from assistant.core.config import Config
from assistant.core.manifest import build_manifest, latest_artifact, write_json_atomic, write_manifest
from assistant.tune_space import Knob, configured_value

PLOTS = {"importance.png": "Which settings mattered (Optuna's fANOVA importance of the validation objective)",
         "history.png": "Validation objective by trial, with the best so far"}


def write_tune_report(cfg: Config, study, space: dict[str, Knob], folder: Path, inputs: dict,
                      heldout: dict | None) -> dict:
    """report.md, summary.json, manifest.json, the plots and (once a trial has finished) assistant.toml."""
    from eval.report import render_markdown

    trials = [trial_row(trial) for trial in study.get_trials(deepcopy=False)]
    best = _best(study)
    summary = {"study": folder.name, "trials": trials, "trial_budget_minutes": cfg.tune.budget_minutes / cfg.tune.trials,
               "trial_minutes": round(sum(t["seconds"] or 0 for t in trials) / 60, 1),
               "best": best and {"trial": best.number, "params": best.params, "accuracy": best.user_attrs.get("accuracy"),
                                 "val_loss": best.user_attrs.get("val_loss"), "adapter": best.user_attrs.get("adapter")},
               "configured": {name: configured_value(cfg, name) for name in space}, "heldout": heldout,
               "plots": draw_plots(study, folder)}
    if best is not None:
        write_best_settings(folder / "assistant.toml", best, folder.name, summary["trial_budget_minutes"])
    write_json_atomic(folder / "summary.json", summary)
    (folder / "report.md").write_text(render_markdown(report_blocks(cfg, summary, space)), encoding="utf-8")
    write_manifest(folder, build_manifest(
        "tune", inputs=inputs, config=cfg.model_dump(mode="json", exclude={"api_key"}), seed=cfg.seed,
        metrics={"trials": len(trials), "best": summary["best"], "heldout": heldout and heldout.get("differences")},
        extra={"space": {name: knob.model_dump(exclude_none=True) for name, knob in space.items()}}))
    return summary


def trial_row(trial) -> dict:
    attrs = trial.user_attrs
    scores = attrs.get("scores") or {}
    return {"trial": trial.number, "state": trial.state.name.lower(), "params": trial.params,
            "accuracy": attrs.get("accuracy"), "val_loss": attrs.get("val_loss"), "steps": attrs.get("steps"),
            "seconds": attrs.get("seconds"), "defaults": bool(attrs.get("defaults")), "retry_of": attrs.get("retry_of"),
            "adapter": attrs.get("adapter"),
            **{f"{mode}_key_facts": scores.get(mode, {}).get("key_fact_accuracy", {}).get("mean")
               for mode in ("offline", "hybrid")}}


def _best(study):
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


# ---------------------------------------------------------------------------------------------- plots

def draw_plots(study, folder: Path) -> dict[str, str]:
    """Optuna's matplotlib plots as PNG; {file: caption, or why it was not drawn}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as plots

    drawn = {}
    for name, plot in (("importance.png", plots.plot_param_importances), ("history.png", plots.plot_optimization_history)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")          # both are marked experimental
                axes = plot(study)
            axes.figure.set_size_inches(7, 4)
            axes.figure.tight_layout()
            axes.figure.savefig(folder / name, dpi=110)
            plt.close(axes.figure)
            drawn[name] = PLOTS[name]
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            # importance needs two finished trials whose settings differ
            (folder / name).unlink(missing_ok=True)
            drawn[name] = f"not drawn yet: {err}"
    return drawn


# ---------------------------------------------------------------------------------------------- best settings

def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))   # a JSON string is a valid TOML basic string


def write_best_settings(path: Path, best, study: str, trial_minutes: float) -> None:
    """The best trial's settings as a config file that `load_config` reads (grouped by section)."""
    sections: dict[str, dict] = {}
    for name, value in best.params.items():
        section, _, field = name.partition(".")
        sections.setdefault(section, {})[field] = value
    lines = [f"# Best settings of `assistant tune` (study {study}, trial {best.number}: validation key facts "
             f"{100 * (best.user_attrs.get('accuracy') or 0):.1f}%).",
             f"# Keep them: copy these sections into your assistant.toml, or run `assistant run --config {path}`.",
             f"# Each trial trained for {trial_minutes:g} minutes; train.budget_minutes stays yours to set."]
    for section, fields in sections.items():
        lines += ["", f"[{section}]", *(f"{field} = {toml_value(value)}" for field, value in fields.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- report

def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _setting(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _cell(estimate: dict | None) -> str:
    if not estimate or estimate.get("mean") is None:
        return "—"
    lo, hi = estimate["ci"]
    return f"{_percent(estimate['mean'])} [{_percent(lo)}, {_percent(hi)}]"


def report_blocks(cfg: Config, summary: dict, space: dict[str, Knob]) -> list[tuple]:
    trials, best = summary["trials"], summary["best"]
    states = {state: sum(t["state"] == state for t in trials) for state in ("complete", "pruned", "fail", "running")}
    budget = (f"each trained for {summary['trial_budget_minutes']:.1f} minutes" if summary["trial_budget_minutes"]
              else "no time budget (train.max_steps or the epochs set the steps)")
    blocks: list[tuple] = [
        ("h1", f"Tune {summary['study']}"),
        ("p", f"{states['complete']} trials complete, {states['pruned']} pruned, {states['fail']} failed "
              f"(of {cfg.tune.trials}); {budget}, {summary['trial_minutes']:.1f} minutes of trials in all. Objective: key-fact accuracy of offline and "
              f"hybrid on up to {cfg.tune.validation_questions} synthetic validation questions (validation loss breaks "
              "ties); a trial is pruned when its validation loss at an evaluation is worse than the median of the "
              "finished trials at that step. Trial 0 trains the configured settings. Trials whose paraphrase count "
              "differs are scored on different validation phrasings (each dataset holds its own out)."),
    ]
    if best:
        blocks += [("h2", f"Best settings (trial {best['trial']})"),
                   ("table", ["setting", "configured", "best"],
                    [[name, _setting(summary["configured"][name]), _setting(best["params"].get(name))] for name in space]),
                   ("p", "Saved as `assistant.toml` in this folder.")]
    blocks += _heldout_blocks(summary.get("heldout"))
    names = list(space)
    blocks += [("h2", "Trials"),
               ("table", ["trial", "state", "offline", "hybrid", "val loss", "steps", "min",
                          *(name.partition(".")[2] for name in names)],
                [[_trial_label(t), t["state"], _percent(t["offline_key_facts"]), _percent(t["hybrid_key_facts"]),
                  "—" if t["val_loss"] is None else f"{t['val_loss']:.3f}", str(t["steps"] or "—"),
                  "—" if t["seconds"] is None else f"{t['seconds'] / 60:.1f}",
                  *(_setting(t["params"].get(name, "—")) for name in names)] for t in trials]),
               ("p", "offline and hybrid: key-fact accuracy (points) on the validation sample.")]
    for name, caption in summary["plots"].items():
        blocks.append(("p", f"{name}: {caption}") if caption.startswith("not drawn") else ("img", name, caption))
    return blocks


def _trial_label(trial: dict) -> str:
    label = str(trial["trial"])
    if trial["defaults"]:
        label += " (configured)"
    if trial["retry_of"] is not None:
        label += f" (retry of {trial['retry_of']})"
    return label


def _heldout_blocks(heldout: dict | None) -> list[tuple]:
    if not heldout:
        return [("p", "Held-out questions: scored once, when the trials are done.")]
    blocks: list[tuple] = [("h2", "Held-out questions: best trial against the configured settings"),
                           ("p", f"{heldout['n']} questions from `{heldout['questions']}`, scored once; key-fact "
                                 "accuracy and domain score (refusing on unanswerable questions) in points, 95% "
                                 "intervals, differences paired over questions.")]
    if heldout.get("note"):
        return blocks + [("p", heldout["note"]),
                         ("table", ["path", "key facts", "domain score"],
                          [[mode, _cell(per.get("key_fact_accuracy")), _cell(per.get("domain_score"))]
                           for mode, per in heldout["best"].items()])]
    rows, verdicts = [], []
    for mode, per_metric in heldout["differences"].items():
        for metric, difference in per_metric.items():
            rows.append([mode, metric, _cell(heldout["defaults"][mode][metric]), _cell(heldout["best"][mode][metric]),
                         _cell(difference)])
            verdicts.append(difference["verdict"])
    return blocks + [("table", ["path", "metric", "configured", "best trial", "best - configured"], rows),
                     ("p", "; ".join(verdicts) + ".")]


def latest_tune(cfg: Config) -> tuple[str, list[str]]:
    """(report Markdown without its image links, plot paths) of the newest tune, or ('', []) when none."""
    folder = latest_artifact(cfg.home / "tunes") if (cfg.home / "tunes").exists() else None
    if folder is None or not (folder / "report.md").exists():
        return "", []
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", (folder / "report.md").read_text(encoding="utf-8"))
    return f"_Tune `{folder}`_\n\n{text}", [str(folder / name) for name in PLOTS if (folder / name).exists()]
