"""The reliability suite's tally: each case's `guards` marker counted by outcome, printed at the end
of the run. A plugin of the top conftest, not a hook of tests/reliability/conftest.py: under
`pytest -n 2` the process that prints the summary never loads that folder's conftest, and it learns
each case's guard from the report a worker sends (its user_properties)."""
from __future__ import annotations

import pytest

GUARDS = ("clear_error", "no_loss", "works")
_OUTCOMES: list[tuple[str, str]] = []      # (guard, "passed" | "failed")


def pytest_configure(config):
    config.addinivalue_line("markers", "guards(kind): what a reliability case checks: " + " | ".join(GUARDS))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    marker = item.get_closest_marker("guards")
    if marker is not None:
        # on the report, which a parallel worker (pytest -n) sends on to the process that prints the tally
        outcome.get_result().user_properties.append(("guards", marker.args[0]))


def pytest_runtest_logreport(report):
    guard = dict(report.user_properties).get("guards")
    if guard and (report.when == "call" or (report.when == "setup" and report.failed)):
        _OUTCOMES.append((guard, "failed" if report.failed else "passed"))


def pytest_terminal_summary(terminalreporter):
    if not _OUTCOMES:
        return
    count = lambda guard, result: sum(1 for g, r in _OUTCOMES if g == guard and r == result)  # noqa: E731
    lost = count("no_loss", "failed")
    tracebacks = count("clear_error", "failed") + count("works", "failed")
    terminalreporter.write_line(
        f"reliability: {len(_OUTCOMES)} cases: {count('clear_error', 'passed')} clear errors, "
        f"{count('works', 'passed')} odd inputs accepted, {count('no_loss', 'passed')} faults without loss; "
        f"{tracebacks} tracebacks or wrong answers, {lost} data lost")
