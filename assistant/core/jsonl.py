"""JSON Lines, one object a line: every JSONL file of the project is read and appended here, so a
broken line is reported the same way everywhere (the file, the line, what is wrong, the fix).

    python -m assistant.core.jsonl corpora/finance/eval/heldout.jsonl     # counts the records, or names the bad line
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from assistant.core.errors import UserError


def read_jsonl(path: Path, error: type[UserError] = UserError, *, skip_broken: bool = False) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a UTF-8 file (a byte-order mark is allowed).

    A line that is not JSON raises `error` naming the file and the line, or, with `skip_broken`, is passed
    over: a cache whose last line a kill cut short simply makes that record again."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                    "re-save it as UTF-8 JSONL, one JSON object a line") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            if skip_broken:
                continue
            raise error(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno}); each line must be "
                        "one JSON object, no trailing commas: fix or delete the line") from err
    return records


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append records and force them to disk, so a kill loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


if __name__ == "__main__":
    import sys

    print(f"{sys.argv[1]}: {len(read_jsonl(Path(sys.argv[1])))} records")
