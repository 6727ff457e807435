"""Many sources, one target: `dvp reenact` over a folder, a glob or a list file, split across processes.

Under ``accelerate launch`` each process takes its share of the sources (`accelerate.PartialState`'s
``split_between_processes``: one process per GPU, or several CPU processes) and loads the target once. Each output
is written once: `video.VideoWriter` renames a finished file into place, so an output that exists is complete, and
a run started again skips it; a run killed mid-file leaves only a ``.tmp-*`` file, which the next run removes before
redoing that source. The main process writes ``summary.json`` and ``summary.csv`` (source, output, frames, seconds,
status) when every process is done.
"""

from __future__ import annotations

import csv
import json
import os
import time

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from .errors import DVPError, InputError
from .sources import VIDEO_SUFFIXES, output_paths

SUMMARY_FIELDS = ("source", "output", "frames", "seconds", "status")


def process_device():
    """This process's device under ``accelerate launch`` (its GPU, or the CPU), for the target to move to."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).device


def run_batch(sources: list[str], folder: str, reenact_one) -> list[dict] | None:
    """Reenact this process's share of ``sources`` into ``folder`` with ``reenact_one(source, output) -> frames``
    (which raises `DVPError` for a source that cannot be used: recorded as failed, the batch goes on). The main
    process writes the summary and returns every source's row, in source order; the other processes return None."""
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator reads it: CPU processes
    if folder.lower().endswith(VIDEO_SUFFIXES):
        raise InputError(f"{folder}: several sources need an output folder, not a video file name.")
    outs = output_paths(sources, folder)
    if state.is_main_process:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):  # left by a run killed while writing: that source is redone
            if name.startswith(".tmp-"):
                os.remove(os.path.join(folder, name))
    state.wait_for_everyone()
    rows = []
    with state.split_between_processes(list(zip(sources, outs))) as mine:
        for source, output in mine:
            rows.append(_one(source, output, reenact_one))
    with open(os.path.join(folder, f".summary-{state.process_index}.json"), "w") as f:
        json.dump(rows, f)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    return write_summary(folder, sources, state.num_processes)


def _one(source: str, output: str, reenact_one) -> dict:
    row = {"source": source, "output": output, "frames": None, "seconds": 0.0, "status": "done"}
    if os.path.isfile(output):
        row["status"] = "skipped: already written"
        return row
    t0 = time.perf_counter()
    try:
        row["frames"] = reenact_one(source, output)
    except DVPError as err:
        row["status"] = f"failed: {err}"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def write_summary(folder: str, sources: list[str], processes: int) -> list[dict]:
    """Merge the processes' rows into ``summary.json`` and ``summary.csv`` in source order; returns the rows."""
    rows = []
    for rank in range(processes):
        path = os.path.join(folder, f".summary-{rank}.json")
        with open(path) as f:
            rows += json.load(f)
        os.remove(path)
    order = {s: i for i, s in enumerate(sources)}
    rows.sort(key=lambda r: order[r["source"]])
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(folder, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows
