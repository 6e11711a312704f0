#!/usr/bin/env python3
"""Executes notebooks in a real Jupyter kernel (the Deno kernel by default) and checks them.

    python3 tools/jupyter_run.py notebooks/01_webgpu_and_vram.ipynb [...] \
        [--out DIR | --inplace] [--html] [--summary FILE] [--grace SECONDS]

Each notebook runs top to bottom with its own folder as the working directory. A notebook fails
when a cell raises or shows an error output, or when a cell that declares what it shows on its
first line (``// expect: plot``, ``// expect: table, text``; see notebooks/README.md) shows less.
``--out DIR`` writes the executed notebook (and with ``--html`` its nbconvert HTML export) into
DIR, ``--inplace`` over the source; ``--summary`` writes what was found as JSON, one object per
notebook. The exit status is 0 only when every notebook passed.

Late outputs: the Deno kernel can publish a cell's outputs on IOPub after the ``idle`` status that
ends the cell, and nbclient stops listening for a cell at that status, so it drops them (most often
the first plot, the one that carries plotly.js). Here every IOPub message is routed by the request
it answers to the cell that sent it, whenever it arrives: after a cell's ``idle`` the client keeps
reading until IOPub has been quiet for ``--grace`` seconds, a message for an earlier cell that
turns up while a later one runs still lands in the earlier cell, and after the last cell the
channel is drained once more before the kernel is shut down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from queue import Empty

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, CellExecutionError
from nbclient.util import ensure_async

PLOTLY_MIME = "application/vnd.plotly.v1+json"
EXPECT_RE = re.compile(r"^\s*(?://|#)\s*expect:\s*(.+?)\s*$")
EXPECT_KINDS = ("plot", "table", "text", "output")


def parse_expect(source: str) -> dict[str, int] | None:
    """The ``expect:`` marker on a cell's first line, as kind -> minimum count; None if absent.

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


class LateOutputClient(NotebookClient):
    """An nbclient that keeps every output a cell produces, even after the cell went idle."""

    def __init__(self, nb, grace: float = 0.5, **kw):
        super().__init__(nb, **kw)
        self.grace = grace
        self.owners: dict[str, tuple] = {}  # request msg_id -> (cell, index)
        self.late_after_idle = 0  # outputs that came after their cell's idle, within the grace
        self.late_in_later_cell = 0  # outputs that came while a later cell was running

    def route(self, msg: dict) -> bool:
        """Processes one IOPub message for the cell it belongs to; True when it is that cell's
        idle status."""
        owner = self.owners.get(msg["parent_header"].get("msg_id"))
        if owner is None:
            return False
        try:
            self.process_message(msg, *owner)
        except CellExecutionComplete:
            return True
        return False

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        assert self.kc is not None
        self.owners[parent_msg_id] = (cell, cell_index)
        idle = False
        while True:
            try:
                msg = await ensure_async(
                    self.kc.iopub_channel.get_msg(timeout=self.grace if idle else None)
                )
            except Empty:
                return  # quiet for the grace period after idle: the cell is complete
            parent = msg["parent_header"].get("msg_id")
            if parent != parent_msg_id and parent in self.owners:
                if msg["msg_type"] != "status":
                    self.late_in_later_cell += 1
            elif parent == parent_msg_id and idle and msg["msg_type"] != "status":
                self.late_after_idle += 1
            if self.route(msg) and parent == parent_msg_id:
                idle = True

    async def drain(self, quiet: float) -> None:
        """Reads IOPub until it has been quiet for `quiet` seconds, routing what comes."""
        assert self.kc is not None
        while True:
            try:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=quiet))
            except Empty:
                return
            if msg["msg_type"] != "status" and msg["parent_header"].get("msg_id") in self.owners:
                self.late_in_later_cell += 1
            self.route(msg)

    async def run(self) -> CellExecutionError | None:
        """Runs every cell in order, stopping at the first that raises; returns its error."""
        self.reset_execution_trackers()
        failure = None
        async with self.async_setup_kernel():
            assert self.kc is not None
            reply = await self.async_wait_for_reply(await ensure_async(self.kc.kernel_info()))
            if reply is not None and "language_info" in reply["content"]:
                self.nb.metadata["language_info"] = reply["content"]["language_info"]
            for index, cell in enumerate(self.nb.cells):
                try:
                    await self.async_execute_cell(
                        cell, index, execution_count=self.code_cells_executed + 1
                    )
                except CellExecutionError as error:
                    failure = error
                    failure.cell_index = index
                    break
            await self.drain(max(2 * self.grace, 1.0))
        return failure


def first_line(source: str) -> str:
    line = source.strip().split("\n", 1)[0]
    return line if len(line) <= 80 else line[:77] + "..."


def check(nb, failure) -> list[str]:
    """The notebook's problems: a cell that raised, error outputs, unmet expect markers."""
    problems = []
    if failure is not None:
        index = failure.cell_index
        problems.append(
            f"cell {index + 1} raised ({first_line(nb.cells[index].source)}):\n"
            + strip_ansi(str(failure).split("------------------\n")[-1]).strip()
        )
    code_cells_run = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        ran = failure is None or index <= failure.cell_index
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors and (failure is None or index != failure.cell_index):
            for e in errors:
                problems.append(f"cell {index + 1} shows an error: {e.get('ename')}: "
                                f"{strip_ansi(e.get('evalue', ''))}")
        try:
            wanted = parse_expect(cell.source)
        except ValueError as error:
            problems.append(f"cell {index + 1}: {error}")
            continue
        if not ran:
            continue
        code_cells_run += 1
        if wanted and (failure is None or index != failure.cell_index):
            found = shown(cell.get("outputs", []))
            for kind, count in wanted.items():
                if found[kind] < count:
                    problems.append(
                        f"cell {index + 1} ({first_line(cell.source)}) should show {count} "
                        f"{kind}(s) and showed {found[kind]}")
    return problems


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def to_html(nb) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


class KernelFailure(Exception):
    """The kernel or its connection failed (not a cell): `cells` code cells had been sent."""

    def __init__(self, error: Exception, cells: int):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.cells = cells


def run_one(path: Path, args) -> dict:
    nb = nbformat.read(path, as_version=4)
    kernel = args.kernel or nb.metadata.get("kernelspec", {}).get("name", "deno")
    client = LateOutputClient(
        nb,
        grace=args.grace,
        timeout=args.timeout,
        iopub_timeout=max(60, int(4 * args.grace) + 1),
        raise_on_iopub_timeout=True,
        kernel_name=kernel,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    started = time.monotonic()
    try:
        failure = asyncio.run(client.run())
    except Exception as error:
        # Not a cell's error (those come back as `failure`): the kernel or its connection failed.
        raise KernelFailure(error, client.code_cells_executed) from error
    seconds = time.monotonic() - started
    problems = check(nb, failure)
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
        "late_after_idle": client.late_after_idle,
        "late_in_later_cell": client.late_in_later_cell,
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
    parser.add_argument("--grace", type=float, default=0.5,
                        help="seconds of IOPub quiet that end a cell after its idle (0.5)")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    args = parser.parse_args()
    if args.html and not (args.out or args.inplace):
        parser.error("--html needs --out or --inplace")

    results = []
    for path in args.notebooks:
        print(f"::: {path}", flush=True)
        # A notebook whose kernel fails — not a cell: an error there is never retried, so no
        # notebook error can be hidden — runs again in a fresh kernel, up to four attempts with
        # growing pauses, and every retry is reported (`restarts`). The one such failure seen
        # here: jupyter_client rejecting a message with "Invalid Signature", a message the Deno
        # kernel corrupted by interleaving two IOPub writes (see takePlotlyScript in
        # lib/plot/jupyter.ts); a failed kernel start ("kernel_info") is retried too.
        attempts = 4
        restarts = []
        for attempt in range(1, attempts + 1):
            try:
                result = run_one(path, args)
                break
            except Exception as error:  # the kernel did not start, died, or the file is unreadable
                cells = error.cells if isinstance(error, KernelFailure) else 0
                reason = f"{error} (after {cells} code cells)"
                result = {"notebook": str(path), "ok": False, "seconds": 0, "cells": 0,
                          "plots": 0, "tables": 0, "late_after_idle": 0, "late_in_later_cell": 0,
                          "problems": [reason]}
                retryable = "Invalid Signature" in str(error) or "kernel_info" in str(error)
                if attempt == attempts or not retryable:
                    break
                restarts.append(reason)
                print(f"    kernel failed: {reason}; running the notebook again in a fresh kernel "
                      f"(attempt {attempt + 1} of {attempts})", flush=True)
                time.sleep(3 * 2 ** (attempt - 1))
        result["restarts"] = restarts
        results.append(result)
        late = result["late_after_idle"] + result["late_in_later_cell"]
        print(f"    {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s: "
              f"{result['cells']} cells, {result['plots']} plots, {result['tables']} tables, "
              f"{late} late outputs kept, {len(restarts)} kernel restarts", flush=True)
        for problem in result["problems"]:
            print("    " + problem.replace("\n", "\n      "), flush=True)
    if args.summary:
        Path(args.summary).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
