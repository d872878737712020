"""`assistant tune` on the tiny corpus with the tiny random Gemma 3: three trials with one pruned, the
held-out comparison and the report, the best settings loading back through the config, and a tune killed
mid-trial that resumes without redoing a finished trial.

    .venv/bin/pytest tests/assistant/test_tune.py -q
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.core.config import ConfigError, load_config
from assistant.tune_space import load_space
from tests.training.test_sft import trainable_tiny_dir  # noqa: F401  (a fixture: a tiny model that can learn)

FIXTURES = Path(__file__).parents[1] / "fixtures"

# The configured learning rate (3e-3) learns slowly; the space also offers one that learns faster (1e-2) and one
# that does not move the weights at all (1e-8). With the sampler's seed, trial 1 draws the still one, which is
# pruned at its first validation loss (worse than the finished trial's there), and trial 2 the fast one, which
# finishes best. Every other knob is pinned, so all trials share one dataset.
SPACE = """
["train.learning_rate"]
choices = [3e-3, 1e-8, 1e-2]
["train.lora_r"]
choices = [16]
["train.lora_alpha"]
choices = [32]
["train.target_modules"]
choices = ["all-linear"]
["synth.paraphrases"]
choices = [2]
["synth.raft_fraction"]
choices = [0.5]
["synth.raft_oracle_fraction"]
choices = [0.95]
["synth.refusals"]
choices = [8]
"""


@pytest.fixture()
def tune_setup(tmp_path, trainable_tiny_dir):  # noqa: F811
    """An assistant.toml and a space file for a quick tune: 8 steps a trial, validation loss every 4."""
    config = tmp_path / "assistant.toml"
    config.write_text(f"""
corpus = "{FIXTURES / 'tiny_corpus'}"
questions = "{FIXTURES / 'tiny_questions.jsonl'}"
workspace = "{tmp_path / 'ws'}"
model_cache = "{Path('workspace/models').resolve()}"
base_model = "{trainable_tiny_dir}"
[synth]
paraphrases = 2
refusals = 8
[train]
learning_rate = 3e-3
max_steps = 8
batch_size = 4
max_seq_len = 192
lora_dropout = 0.0
[eval]
max_new_tokens = 8
limit = 4
bootstrap_samples = 200
[tune]
trials = 3
budget_minutes = 0
eval_steps = 4
validation_questions = 6
sampler_startup_trials = 3
pruner_startup_trials = 1
""")
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    return config, space


def test_three_trials_prune_one_and_write_settings_that_load_back(tune_setup):
    from assistant.tune import tune
    from assistant.tune_report import latest_tune

    config, space = tune_setup
    cfg = load_config(config)
    report = tune(cfg, space_path=space, progress=False)

    states = {t["trial"]: t["state"] for t in report.summary["trials"]}
    assert states == {0: "complete", 1: "pruned", 2: "complete"}, states
    assert report.summary["trials"][0]["defaults"]
    pruned = report.summary["trials"][1]
    assert pruned["params"]["train.learning_rate"] == 1e-8 and pruned["steps"] == 4
    # every finished trial wrote a normal adapter, its manifest tagged with the trial
    for trial in (t for t in report.summary["trials"] if t["state"] == "complete"):
        manifest = json.loads((Path(trial["adapter"]) / "manifest.json").read_text())
        assert manifest["tune"] == {"study": report.folder.name, "trials": [trial["trial"]]}

    # the best settings load back through the config, and are the best trial's
    assert report.summary["best"]["trial"] == 2
    best = load_config(report.folder / "assistant.toml")
    assert best.train.learning_rate == 1e-2 and best.synth.paraphrases == 2

    # held-out: scored once, the best trial beside the configured settings, paired per path
    heldout = report.summary["heldout"]
    assert heldout["n"] == 4 and set(heldout["differences"]) == {"offline", "hybrid"}
    assert heldout["differences"]["hybrid"]["key_fact_accuracy"]["n"] == 4
    assert "verdict" in heldout["differences"]["hybrid"]["key_fact_accuracy"]
    text, plots = latest_tune(cfg)
    assert "| trial | state |" in text and "pruned" in text
    assert [Path(p).name for p in plots] == ["importance.png", "history.png"]
    assert json.loads((report.folder / "manifest.json").read_text())["kind"] == "tune"


def trial_states(database: Path) -> list[str]:
    """The trials' states, read without writing: opening the study through Optuna while the tune is still
    creating its tables races it (both stamp the schema version, and one fails on the unique key)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return [state for (state,) in db.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:   # the tables are not there yet, or the tune holds a write lock
        return []


def test_a_killed_tune_resumes_without_redoing_finished_trials(tune_setup, tmp_path):
    import optuna

    config, space = tune_setup
    command = [sys.executable, "-m", "assistant", "tune", "--config", str(config), "--space", str(space), "--json"]
    # the subprocess runs this checkout's code, not whichever checkout the package is installed from
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found = []
    deadline = time.time() + 1800
    try:
        while time.time() < deadline and first.poll() is None:
            time.sleep(0.5)
            found = list((tmp_path / "ws" / "tunes").glob("*/study.db"))
            if found and trial_states(found[0]).count("COMPLETE") == 1 and "RUNNING" in trial_states(found[0]):
                first.send_signal(signal.SIGKILL)   # trial 0 done, trial 1 under way
                break
        first.wait(timeout=60)
    finally:
        first.kill()
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-3000:]
    storage = f"sqlite:///{found[0]}"
    study = optuna.load_study(study_name=found[0].parent.name, storage=storage)
    finished_before = {t.number: t.datetime_complete for t in study.trials if t.state.name == "COMPLETE"}

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "marked failed and runs again" in second.stderr
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    trials = study.trials
    # the finished trial was kept as it was, not trained again
    for number, completed in finished_before.items():
        assert trials[number].state.name == "COMPLETE" and trials[number].datetime_complete == completed
    assert sum(bool(t.user_attrs.get("defaults")) for t in trials if t.state.name == "COMPLETE") == 1
    # the killed trial is failed and ran again with the settings it had chosen (a kill can land while it
    # is still choosing them one by one, so the retry may choose the rest); three trials finished in all
    killed = [t for t in trials if t.state.name == "FAIL"]
    assert len(killed) == 1
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == killed[0].number)
    assert retry.params.items() >= killed[0].params.items() and retry.state.name in ("COMPLETE", "PRUNED")
    assert set(retry.params) == set(trials[0].params)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3
    assert json.loads(second.stdout.strip().splitlines()[-1])["best"]["trial"] is not None


def test_a_bad_space_file_names_the_file_and_the_field(tmp_path):
    cfg = load_config(overrides={"workspace": str(tmp_path / "ws")})
    space = tmp_path / "space.toml"
    space.write_text('["train.lora_r"]\nlow = 8\nhigh = 4\n')
    with pytest.raises(ConfigError, match=r"space.toml: \"train.lora_r\" has low 8.0 above high 4.0"):
        load_space(space, cfg)
    space.write_text('["index.chunk_size"]\nchoices = [128]\n')
    with pytest.raises(ConfigError, match=r"\"index.chunk_size\" is not a setting a trial can change"):
        load_space(space, cfg)
    space.write_text('["train.learning_rate"]\nlow = -1.0\nhigh = 1e-3\n')
    with pytest.raises(ConfigError, match=r"\"train.learning_rate\" = -1.0 is not a valid value"):
        load_space(space, cfg)
    # the configured value joins a list of choices, so the first trial can train it
    space.write_text('["train.lora_r"]\nchoices = [4, 8]\n')
    assert load_space(space, cfg)["train.lora_r"].choices == [4, 8, 16]
