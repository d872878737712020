"""The app's Pipeline tab: build the knowledge base, the dataset, the adapter and the evaluation from
the browser, one stage at a time, with progress, ETA, the loss curves and a cancel button.

Each stage runs the CLI verb (`assistant index | synth | train --resume | eval`) in a child process
with the app's own settings written to a config file: the same library call, manifests and artifacts
as in a terminal, and cancelling is what Ctrl+C is there, after which the same button resumes (index
and synth skip what is done, training continues from its last checkpoint). A child process keeps a
training run's memory and threads out of the process that answers the chat.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from assistant.core.config import Config

# Button label -> (CLI verb, extra flags). `train --resume` continues a cancelled run.
STAGES = {"Build knowledge base": ("index", []), "Build dataset": ("synth", []),
          "Train adapter": ("train", ["--resume"]), "Evaluate": ("eval", [])}
# tqdm's bar as it reaches stderr: "train (sft):  45%|####5     | 9/20 [00:30<00:37, 3.4s/step, loss=2.345, val=2.100]",
# or, past its total (a resumed run can overshoot the plan it reads back), "train (sft): 21step [01:08, 3.2s/step, ...]".
_BAR = re.compile(r"(?P<desc>[^|\r\n\[]*?):\s+(?:\d+%\|[^|]*\|\s*)?(?P<n>\d+)(?:/(?P<total>\d+))?[a-z]*\s*"
                  r"\[(?P<spent>[\d:]+)(?:<(?P<eta>[\d:?]+))?(?P<rest>[^\]]*)\]")
_LOSS = re.compile(r"\b(loss|val)=([\d.]+)")


def write_stage_config(cfg: Config, corpus: Path, budget_minutes: float) -> Path:
    """The app's settings as a TOML file for the child process, with the folder and time budget of the tab."""
    data = cfg.model_dump(mode="json", exclude={"api_key"}, exclude_none=True)
    data["corpus"], data["workspace"] = str(corpus), str(cfg.home.absolute())
    data["train"]["budget_minutes"] = data["eval"]["budget_minutes"] = budget_minutes
    lines = [f"{key} = {json.dumps(value)}" for key, value in data.items() if not isinstance(value, dict)]
    for section, fields in data.items():
        if isinstance(fields, dict):
            # A JSON string, number, boolean or list of them is valid TOML as written.
            lines += ["", f"[{section}]", *(f"{k} = {json.dumps(v)}" for k, v in fields.items() if v is not None)]
    path = cfg.home / "pipeline" / "assistant.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class StageRun:
    """One child process and what its stderr said so far."""
    verb: str
    process: subprocess.Popen
    stdout: Path                                        # where the verb's --json line goes
    started: float = field(default_factory=time.time)
    bar: dict | None = None                             # the newest progress bar's fields
    losses: list[tuple[int, str, float]] = field(default_factory=list)   # (step, "train" | "validation", loss)
    lines: list[str] = field(default_factory=list)
    cancelled: bool = False

    def read(self) -> None:
        """Follow stderr until the process ends (run in a thread): progress, losses, the last lines."""
        pending = ""
        log = self.stdout.with_suffix(".log").open("wb")      # the whole stderr, for a failure's details
        while chunk := self.process.stderr.read1(4096):
            log.write(chunk)
            log.flush()
            pending += chunk.decode("utf-8", "replace")
            *parts, pending = re.split(r"[\r\n]", pending)
            for part in filter(str.strip, parts):
                self._take(part)
        if pending.strip():
            self._take(pending)
        log.close()

    def _take(self, line: str) -> None:
        bar = _BAR.search(line)
        if bar is None:
            self.lines = [*self.lines[-30:], line.rstrip()]
            return
        self.bar = bar.groupdict()
        # The bar's postfix repeats the newest loss until the next log: keep a value once, where it changed.
        newest = {series: value for _, series, value in self.losses}
        for name, value in _LOSS.findall(bar["rest"]):
            series = "train" if name == "loss" else "validation"
            if newest.get(series) != float(value):
                self.losses.append((int(bar["n"]), series, float(value)))

    @property
    def finished(self) -> bool:
        return self.process.poll() is not None

    def status(self) -> str:
        spent = time.time() - self.started
        if not self.finished:
            if self.bar:
                done = f"{self.bar['n']}/{self.bar['total']} · ETA {self.bar['eta']}" if self.bar["total"] else self.bar["n"]
                return f"**{self.verb}** running · {self.bar['desc'].strip() or 'progress'} {done} · {spent:.0f} s so far"
            return f"**{self.verb}** running · {spent:.0f} s so far · {self.lines[-1] if self.lines else 'starting'}"
        if self.cancelled and self.process.returncode != 0:      # (a cancel that came as it ended: done)
            return f"**{self.verb}** cancelled after {spent:.0f} s; click the same button to resume where it stopped."
        if self.process.returncode == 0:
            return f"**{self.verb}** done in {spent:.0f} s."
        tail = "\n".join(self.lines[-6:])
        return (f"**{self.verb}** failed (exit {self.process.returncode}); the whole output is in "
                f"`{self.stdout.with_suffix('.log')}`:\n\n```\n{tail}\n```")

    def result(self) -> dict | None:
        """The verb's --json output, once it has finished well."""
        if self.process.returncode != 0:
            return None
        lines = self.stdout.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return json.loads(lines[-1]) if lines else None


class PipelineRunner:
    """At most one stage at a time per app (they all write the same workspace)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.run: StageRun | None = None
        self._lock = threading.Lock()

    def start(self, label: str, corpus: str, budget_minutes: float) -> StageRun:
        folder = Path(corpus or self.cfg.corpus).expanduser()
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such folder; type the path of a folder of documents on the server")
        verb, flags = STAGES[label]
        with self._lock:
            if self.run is not None and not self.run.finished:
                raise ValueError(f"{self.run.verb} is still running; wait for it or cancel it first")
            config = write_stage_config(self.cfg, folder.absolute(), float(budget_minutes or 0))
            # Settings come from the config file alone: ASSISTANT_* variables would override it.
            env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_") or k == "ASSISTANT_NATIVE_BF16"}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), env.get("PYTHONPATH")]))
            # stdout to a file: the trainer prints its logs there too, and a full pipe would stop the child.
            stdout = config.parent / f"{verb}.stdout"
            with stdout.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "assistant", verb, *flags, "--config", str(config), "--json"],
                    stdout=out, stderr=subprocess.PIPE, env=env,
                    start_new_session=True)   # Ctrl+C in the app's terminal is not the child's
            self.run = StageRun(verb, process, stdout)
            threading.Thread(target=self.run.read, daemon=True, name=f"stage-{verb}").start()
            return self.run

    def cancel(self) -> str:
        run = self.run
        if run is None or run.finished:
            return "Nothing is running."
        run.cancelled = True
        # SIGINT is the CLI's Ctrl+C: it stops where a re-run resumes ("interrupted; re-run ... to resume").
        run.process.send_signal(signal.SIGINT)
        try:
            run.process.wait(30)
        except subprocess.TimeoutExpired:
            # a child still busy after 30 s (a loaded machine, or inside an import that swallowed the signal)
            run.process.kill()
            run.process.wait()
        return run.status()


def loss_figure(run: StageRun | None):
    """Training and validation loss against the step, as far as the run has got."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3))
    for series in ("train", "validation"):
        points = [(step, loss) for step, name, loss in (run.losses if run else []) if name == series]
        if points:
            axes.plot(*zip(*points), marker="o", label=series)
    axes.set(xlabel="step", ylabel="loss", title="Training and validation loss")
    if run and run.losses:
        axes.legend()
    plt.close(figure)          # Gradio renders it; pyplot must not keep every second's figure
    return figure


def follow_stage(assistant, runner: PipelineRunner, label: str, folder: str, budget: float, header_text):
    """Start a stage and stream (status, loss plot, output, header) each second until it ends; then the
    Chat tab gets what it made: a new adapter for the tuned paths, a new index for retrieval."""
    try:
        run = runner.start(label, folder, budget)
    except ValueError as err:
        yield f"**{label}**: {err}", loss_figure(runner.run), "", header_text()
        return
    while not run.finished:
        yield run.status(), loss_figure(run), "\n".join(run.lines[-12:]), header_text()
        time.sleep(1.0)
    time.sleep(0.2)       # the reader thread takes the last lines
    result = run.result()
    if result is not None and run.verb == "train":
        assistant.use_adapter(Path(result["adapter"]))
    if result is not None and run.verb == "index":
        assistant.reload_knowledge()
    yield run.status(), loss_figure(run), "\n".join(run.lines[-12:]), header_text()


def build_pipeline_tab(assistant, header, header_text) -> None:
    """The tab's components and events, inside the app's `gr.Blocks` (see app.build_app); `header` is the
    app's title line, rewritten by `header_text()` when a stage has changed the adapter."""
    import functools

    import gradio as gr

    cfg = assistant.cfg
    runner = PipelineRunner(cfg)
    gr.Markdown(f"Each stage runs the same command as the terminal (`assistant index`, `synth`, `train --resume`, "
                f"`eval`) into this app's workspace `{cfg.home}`. Cancel stops it where the same button resumes. "
                "A finished training run is used by the Chat tab at once.")
    with gr.Row():
        folder = gr.Textbox(str(cfg.corpus), label="Documents folder on the server",
                            info=f"Uploaded documents are in {cfg.home / 'uploads'}", scale=4, elem_id="pipeline-folder")
        budget = gr.Number(cfg.train.budget_minutes, label="Time budget (minutes)", minimum=0, scale=1,
                           info=f"Training's budget, yet at least train.min_steps ({cfg.train.min_steps}) steps; "
                                "evaluation's budget too", elem_id="pipeline-budget")
    with gr.Row():
        buttons = {label: gr.Button(label, variant="primary", elem_id=f"pipeline-{verb}")
                   for label, (verb, _) in STAGES.items()}
        cancel = gr.Button("Cancel", variant="stop", elem_id="pipeline-cancel")
    status = gr.Markdown("No stage has run yet.", elem_id="pipeline-status")
    plot = gr.Plot(loss_figure(None), show_label=False, elem_id="pipeline-loss")
    output = gr.Textbox(label="Output", lines=8, max_lines=8, autoscroll=True, elem_id="pipeline-output")
    for label, button in buttons.items():
        button.click(functools.partial(follow_stage, assistant, runner, label, header_text=header_text),
                     [folder, budget], [status, plot, output, header], api_name=False,
                     # A click while the stage's previous run is still winding down (just cancelled) must
                     # not be dropped, as Gradio's default ("once") would: it runs right after.
                     trigger_mode="always_last")
    cancel.click(runner.cancel, None, [status], api_name=False)
