"""The Pipeline tab's plumbing without a browser: the child process gets exactly the app's settings,
the progress bar and losses are read from its stderr, a bad folder is refused by name, and a cancelled
index run is reported as cancelled (the browser test drives the whole tab)."""
from __future__ import annotations

import time

import pytest

from assistant.core.config import load_config
from assistant.pipeline_tab import PipelineRunner, StageRun, write_stage_config


def test_the_child_reads_the_apps_settings_with_the_tabs_folder_and_budget(tiny_cfg, tmp_path):
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(update={"lora_r": 4, "eval_steps": 3})})
    path = write_stage_config(cfg, tmp_path / "docs", 2.5)
    child = load_config(path)
    assert child.corpus == tmp_path / "docs" and child.home == cfg.home.absolute()
    assert child.train.budget_minutes == 2.5 and child.eval.budget_minutes == 2.5
    assert child.train.lora_r == 4 and child.train.eval_steps == 3 and child.base_model == cfg.base_model
    same = {"corpus", "workspace", "train", "eval"}
    assert child.model_dump(exclude=same) == cfg.model_dump(exclude=same)


def test_progress_eta_and_losses_come_from_the_bar(tmp_path):
    run = StageRun("train", process=None, stdout=tmp_path / "out")
    for line in ["train (sft): 10%|#         | 2/20 [00:04<00:36,  2.0s/step]",
                 "train (sft): 20%|##        | 4/20 [00:08<00:32,  2.0s/step, loss=3.210]",
                 "train (sft): 25%|##5       | 5/20 [00:10<00:30,  2.0s/step, loss=3.210]",
                 "train (sft): 30%|###       | 6/20 [00:12<00:28,  2.0s/step, loss=3.010, val=3.100]",
                 "some other line"]:
        run._take(line)
    assert run.bar["n"] == "6" and run.bar["total"] == "20" and run.bar["eta"] == "00:28"
    assert run.losses == [(4, "train", 3.21), (6, "train", 3.01), (6, "validation", 3.1)]
    run._take("train (sft): 21step [01:08,  3.2s/step, loss=2.900, val=3.100]")     # past the bar's total
    assert run.bar["n"] == "21" and run.bar["total"] is None and run.losses[-1] == (21, "train", 2.9)
    assert run.lines == ["some other line"]


def test_a_missing_folder_is_refused_by_name(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        PipelineRunner(tiny_cfg).start("Build knowledge base", str(tmp_path / "nowhere"), 1)


def test_one_stage_at_a_time_and_a_cancelled_one_says_it_resumes(tiny_cfg):
    runner = PipelineRunner(tiny_cfg)
    run = runner.start("Build knowledge base", str(tiny_cfg.corpus), 1)
    with pytest.raises(ValueError, match="index is still running"):
        runner.start("Build dataset", str(tiny_cfg.corpus), 1)
    time.sleep(1.0)                     # inside the child's imports: Ctrl+C must still end it
    status = runner.cancel()
    assert run.finished
    # On a loaded CI machine the tiny index once finished (exit 0) as the Ctrl+C arrived: then it is done, not
    # cancelled. The browser test cancels a training run mid-way and checks the checkpoint it leaves.
    if run.process.returncode != 0:
        assert "cancelled" in status and "click the same button to resume" in run.status() and run.result() is None
    else:
        assert "done" in status and run.result() is not None
