#!/usr/bin/env python3
"""Executes notebooks in a real Jupyter kernel (the Deno kernel by default) as "Run All" does, and
checks them.

    python3 tools/jupyter_run.py notebooks/01_webgpu_and_vram.ipynb [...] \
        [--out DIR | --inplace] [--html] [--summary FILE]

Each notebook runs with its own folder as the working directory. Like Run All in Jupyter Notebook,
JupyterLab or VS Code, every code cell's ``execute_request`` is queued at once through
jupyter_client; the kernel runs them in order while the next are already waiting. Every IOPub
message is then filed under the cell its ``parent_header.msg_id`` names, exactly as a front end
files it, and the run fails when:

- an output names no cell of this run, or arrives outside its cell's ``busy`` … ``idle`` window
  (an output sent after its cell finished: a front end shows it under the wrong cell, or drops it);
- an ``execute_result`` carries another cell's execution count;
- a cell raises or shows an error output;
- a cell's first line declares what it shows (``// expect: plot``, ``// expect: table x2, text``;
  see notebooks/README.md) and it shows less, or shows more plots or tables than it declares
  (a plot or table another cell sent would land there);
- anything arrives after the last cell's ``idle``.

``--out DIR`` writes the executed notebook (and with ``--html`` its nbconvert HTML export) into
DIR, ``--inplace`` over the source; ``--summary`` writes what was found as JSON, one object per
notebook. The exit status is 0 only when every notebook passed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_client.manager import KernelManager
from nbformat.v4 import output_from_msg

PLOTLY_MIME = "application/vnd.plotly.v1+json"
EXPECT_RE = re.compile(r"^\s*(?://|#)\s*expect:\s*(.+?)\s*$")
EXPECT_KINDS = ("plot", "table", "text", "output")
OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error", "update_display_data",
                "clear_output")


def parse_expect(source: str) -> dict[str, int] | None:
    """The ``expect:`` marker on a cell's first line, as kind -> count; None if absent.

    ``// expect: plot`` asks for one plot, ``// expect: plot x2, table`` for two plots and a
    table. Raises ValueError on a marker it cannot read, so that a typo fails loudly.
    """
    first = source.lstrip("\n").split("\n", 1)[0]
    match = EXPECT_RE.match(first)
    if not match:
        return None
    wanted: dict[str, int] = {}
    for item in match.group(1).split(","):
        parts = item.split()
        if not parts or parts[0] not in EXPECT_KINDS or len(parts) > 2:
            raise ValueError(f"unreadable expect marker: {first.strip()!r}")
        count = 1
        if len(parts) == 2:
            if not re.fullmatch(r"x[1-9][0-9]*", parts[1]):
                raise ValueError(f"unreadable expect marker: {first.strip()!r}")
            count = int(parts[1][1:])
        wanted[parts[0]] = wanted.get(parts[0], 0) + count
    return wanted


def shown(outputs: list) -> dict[str, int]:
    """Counts what a cell's outputs show: plots, tables, text, and outputs of any kind."""
    found = {kind: 0 for kind in EXPECT_KINDS}
    for out in outputs:
        kind = out.get("output_type")
        if kind == "error":
            continue
        found["output"] += 1
        if kind == "stream":
            found["text"] += 1
            continue
        data = out.get("data", {})
        html = data.get("text/html", "")
        html = "".join(html) if isinstance(html, list) else html
        if PLOTLY_MIME in data:
            found["plot"] += 1
        elif "<table" in html:
            found["table"] += 1
        elif "text/plain" in data:
            found["text"] += 1
    return found


class KernelFailure(Exception):
    """The kernel or its connection failed (not a cell): `cells` cells had finished."""

    def __init__(self, error: Exception | str, cells: int):
        super().__init__(f"{type(error).__name__}: {error}" if isinstance(error, Exception)
                         else error)
        self.cells = cells


class CellRun:
    """What one queued cell produced, in arrival order."""

    def __init__(self, index: int, msg_id: str):
        self.index = index
        self.msg_id = msg_id
        self.busy: int | None = None  # arrival number of its busy status
        self.idle: int | None = None
        self.execution_count: int | None = None
        self.outputs: list = []
        self.displays: dict[str, list] = {}  # display_id -> outputs showing it
        self.clear_pending = False
        self.problems: list[str] = []


def add_output(run: CellRun, msg: dict) -> None:
    """Files one output message into the cell's outputs, as a front end shows it."""
    kind = msg["msg_type"]
    content = msg["content"]
    if kind == "clear_output":
        if content.get("wait"):
            run.clear_pending = True
        else:
            run.outputs.clear()
        return
    display_id = (content.get("transient") or {}).get("display_id")
    if kind == "update_display_data":
        for out in run.displays.get(display_id, []):
            out["data"] = content.get("data", {})
            out["metadata"] = content.get("metadata", {})
        return
    if run.clear_pending:
        run.outputs.clear()
        run.clear_pending = False
    out = output_from_msg(msg)
    if kind == "stream" and run.outputs and run.outputs[-1].get("output_type") == "stream" \
            and run.outputs[-1].get("name") == out.get("name"):
        run.outputs[-1]["text"] += out["text"]
        return
    if display_id:
        run.displays.setdefault(display_id, []).append(out)
    run.outputs.append(out)


def run_all(nb, kernel: str, cwd: Path, timeout: float) -> list[CellRun]:
    """Queues every code cell at once and files what comes back; returns one CellRun per cell."""
    km = KernelManager(kernel_name=kernel)
    km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    runs: list[CellRun] = []
    try:
        try:
            kc.wait_for_ready(timeout=120)
        except RuntimeError as error:
            raise KernelFailure(f"kernel_info: {error}", 0) from error
        reply = kc.kernel_info(reply=True, timeout=60)
        if "language_info" in reply["content"]:
            nb.metadata["language_info"] = reply["content"]["language_info"]
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                msg_id = kc.execute(cell.source, store_history=True, allow_stdin=False,
                                    stop_on_error=True)
                runs.append(CellRun(index, msg_id))
        by_id = {r.msg_id: r for r in runs}
        arrival = 0
        finished = 0
        last_progress = time.monotonic()
        while finished < len(runs):
            try:
                msg = kc.get_iopub_msg(timeout=5)
            except Empty:
                if not km.is_alive():
                    raise KernelFailure("the kernel died", finished)
                if time.monotonic() - last_progress > timeout:
                    raise KernelFailure(f"no cell finished in {timeout:.0f} s", finished)
                continue
            except Exception as error:  # a message the client could not read
                raise KernelFailure(error, finished) from error
            arrival += 1
            file_message(msg, arrival, runs, by_id)
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle" \
                    and msg["parent_header"].get("msg_id") in by_id:
                finished = sum(1 for r in runs if r.idle is not None)
                last_progress = time.monotonic()
        # Anything after the last cell's idle is late by definition.
        quiet_until = time.monotonic() + 1.0
        while time.monotonic() < quiet_until:
            try:
                msg = kc.get_iopub_msg(timeout=max(0.05, quiet_until - time.monotonic()))
            except Empty:
                break
            arrival += 1
            file_message(msg, arrival, runs, by_id)
        for r in runs:
            try:
                while True:
                    shell = kc.get_shell_msg(timeout=0.01)
                    owner = by_id.get(shell["parent_header"].get("msg_id"))
                    if owner and shell["msg_type"] == "execute_reply":
                        owner.execution_count = owner.execution_count or \
                            shell["content"].get("execution_count")
            except Empty:
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    return runs


def file_message(msg: dict, arrival: int, runs: list[CellRun], by_id: dict) -> None:
    """Files one IOPub message under the cell it names, recording what is out of place."""
    kind = msg["msg_type"]
    parent = msg["parent_header"].get("msg_id")
    run = by_id.get(parent)
    if kind == "status":
        if run is None:
            return  # kernel start-up, kernel_info and the like
        state = msg["content"].get("execution_state")
        if state == "busy" and run.busy is None:
            run.busy = arrival
        elif state == "idle":
            run.idle = arrival
        return
    if kind == "execute_input":
        if run is not None:
            run.execution_count = msg["content"].get("execution_count")
        return
    if kind not in OUTPUT_TYPES:
        return
    if run is None:
        # Owned by no cell of this run: name the cell that was running when it came.
        running = next((r for r in runs if r.busy is not None and r.idle is None), None)
        where = f"while cell {running.index + 1} ran" if running else "between cells"
        target = running or runs[-1]
        target.problems.append(f"a {kind} output labelled with an unknown request arrived {where}")
        return
    if run.busy is None or run.idle is not None:
        when = "before the cell started" if run.busy is None else "after the cell's idle"
        run.problems.append(f"a {kind} output arrived {when} (a late output)")
    if kind == "execute_result":
        count = msg["content"].get("execution_count")
        if run.execution_count is not None and count != run.execution_count:
            run.problems.append(f"an execute_result of execution {count} was labelled with this "
                                f"cell (execution {run.execution_count})")
    add_output(run, msg)


def first_line(source: str) -> str:
    line = source.strip().split("\n", 1)[0]
    return line if len(line) <= 80 else line[:77] + "..."


def check(nb, runs: list[CellRun]) -> list[str]:
    """The notebook's problems: out-of-place outputs, errors, expect markers not met."""
    problems = []
    for run in runs:
        cell = nb.cells[run.index]
        label = f"cell {run.index + 1} ({first_line(cell.source)})"
        for problem in run.problems:
            problems.append(f"{label}: {problem}")
        for out in run.outputs:
            if out.get("output_type") == "error":
                traceback = strip_ansi("\n".join(out.get("traceback", [])[:12]))
                problems.append(f"{label} raised {out.get('ename')}: "
                                f"{strip_ansi(out.get('evalue', ''))}\n{traceback}".rstrip())
        try:
            wanted = parse_expect(cell.source) or {}
        except ValueError as error:
            problems.append(f"cell {run.index + 1}: {error}")
            continue
        found = shown(run.outputs)
        for kind in EXPECT_KINDS:
            count = wanted.get(kind, 0)
            if found[kind] < count:
                problems.append(f"{label} should show {count} {kind}(s) and showed {found[kind]}")
            elif kind in ("plot", "table") and found[kind] > count:
                problems.append(f"{label} shows {found[kind]} {kind}(s) but declares {count}")
    return problems


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def to_html(nb) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def run_one(path: Path, args) -> dict:
    nb = nbformat.read(path, as_version=4)
    kernel = args.kernel or nb.metadata.get("kernelspec", {}).get("name", "deno")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    started = time.monotonic()
    runs = run_all(nb, kernel, path.parent.resolve(), args.timeout)
    seconds = time.monotonic() - started
    for run in runs:
        cell = nb.cells[run.index]
        cell.outputs = run.outputs
        cell.execution_count = run.execution_count
    problems = check(nb, runs)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    totals = shown(outputs)
    result = {
        "notebook": str(path),
        "ok": not problems,
        "problems": problems,
        "seconds": round(seconds, 1),
        "cells": len(nb.cells),
        "plots": totals["plot"],
        "tables": totals["table"],
        # Per code cell (1-based position among all cells): plots and tables it shows.
        "shown": {str(r.index + 1): [shown(r.outputs)["plot"], shown(r.outputs)["table"]]
                  for r in runs},
    }
    if args.inplace or args.out:
        target = path if args.inplace else Path(args.out) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        result["executed"] = str(target)
        if args.html:
            html_path = target.with_suffix(".html")
            html_path.write_text(to_html(nb), encoding="utf-8")
            result["html"] = str(html_path)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="write executed notebooks (and HTML) into this folder")
    where.add_argument("--inplace", action="store_true", help="write executed notebooks back")
    parser.add_argument("--html", action="store_true", help="also write nbconvert's HTML export")
    parser.add_argument("--summary", help="write the results as JSON here")
    parser.add_argument("--kernel", help="kernel name (default: the notebook's kernelspec)")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds a cell may run before the notebook fails (600)")
    args = parser.parse_args()
    if args.html and not (args.out or args.inplace):
        parser.error("--html needs --out or --inplace")

    results = []
    for path in args.notebooks:
        print(f"::: {path}", flush=True)
        # A notebook whose kernel fails — not a cell: an error there is never retried, so no
        # notebook error can be hidden — runs again in a fresh kernel, up to three attempts, and
        # every retry is reported (`restarts`). Retried: a kernel that did not start, and a
        # message jupyter_client could not read ("Invalid Signature": a message corrupted by the
        # Deno kernel's unordered IOPub writes, see takePlotlyScript in lib/plot/jupyter.ts).
        attempts = 3
        restarts = []
        for attempt in range(1, attempts + 1):
            try:
                result = run_one(path, args)
                break
            except Exception as error:
                cells = error.cells if isinstance(error, KernelFailure) else 0
                reason = f"{error} (after {cells} code cells)"
                result = {"notebook": str(path), "ok": False, "seconds": 0, "cells": 0,
                          "plots": 0, "tables": 0, "shown": {}, "problems": [reason]}
                retryable = "Invalid Signature" in str(error) or "kernel_info" in str(error)
                if attempt == attempts or not retryable:
                    break
                restarts.append(reason)
                print(f"    kernel failed: {reason}; running the notebook again in a fresh kernel "
                      f"(attempt {attempt + 1} of {attempts})", flush=True)
                time.sleep(3 * attempt)
        result["restarts"] = restarts
        results.append(result)
        print(f"    {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s (Run All): "
              f"{result['cells']} cells, {result['plots']} plots, {result['tables']} tables, "
              f"{len(restarts)} kernel restarts", flush=True)
        for problem in result["problems"]:
            print("    " + problem.replace("\n", "\n      "), flush=True)
    if args.summary:
        Path(args.summary).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
