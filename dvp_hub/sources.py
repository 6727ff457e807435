"""The sources of a `dvp reenact` batch: several ``--source`` values, a folder, a glob or a list file, and the
output each one gets. No heavy imports: a refused input fails before torch is loaded."""

from __future__ import annotations

import glob
import os

from .errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
SOURCE_SUFFIXES = (*VIDEO_SUFFIXES, ".safetensors")
LIST_SUFFIXES = (".txt", ".list")


def is_batch(sources: list[str], output: str) -> bool:
    """Whether a `dvp reenact` call is a batch: several sources, or one that is a folder, a glob or a list file."""
    if len(sources) > 1:
        return True
    s = sources[0]
    if os.path.isfile(s) and not s.endswith(LIST_SUFFIXES):
        return False  # a file, even one whose name has glob characters
    return os.path.isdir(s) or any(c in s for c in "*?[") or s.endswith(LIST_SUFFIXES)


def expand_sources(specs: list[str]) -> list[str]:
    """Each ``--source``: a file, a folder (its videos and parameter files, sorted), a glob, or a list file (one
    path a line, relative to the list; blank lines and ``#`` comments skipped). Duplicates are dropped in order."""
    out: list[str] = []
    for spec in specs:
        if spec.endswith(LIST_SUFFIXES) and os.path.isfile(spec):
            base = os.path.dirname(os.path.abspath(spec))
            with open(spec, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
            out += [ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines]
        elif os.path.isdir(spec):
            out += sorted(os.path.join(spec, n) for n in os.listdir(spec) if n.lower().endswith(SOURCE_SUFFIXES))
        elif any(c in spec for c in "*?[") and not os.path.isfile(spec):
            found = sorted(p for p in glob.glob(spec) if p.lower().endswith(SOURCE_SUFFIXES))
            if not found:
                raise InputError(f"{spec}: matches no video or parameter file.")
            out += found
        else:
            out.append(spec)
    unique, seen = [], set()
    for path in out:  # the first of each file, in order
        if os.path.abspath(path) not in seen:
            seen.add(os.path.abspath(path))
            unique.append(path)
    if not unique:
        raise InputError(f"{', '.join(specs)}: no video or parameter file to reenact.")
    missing = [p for p in unique if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{missing[0]}: no such file (and {len(missing) - 1} more missing); check the list.")
    return unique


def output_paths(sources: list[str], folder: str) -> list[str]:
    """``folder/<source name>.mp4`` for each source; two sources of the same name are refused."""
    outs = [os.path.join(folder, os.path.splitext(os.path.basename(s))[0] + ".mp4") for s in sources]
    clash = {o for o in outs if outs.count(o) > 1}
    if clash:
        raise InputError(f"two sources would both write {sorted(clash)[0]}; rename one or run them apart.")
    same = {os.path.abspath(s) for s in sources} & {os.path.abspath(o) for o in outs}
    if same:
        raise InputError(f"{sorted(same)[0]} would be its own output; give another output folder.")
    return outs
