"""The local targets folder: where `dvp train` writes targets, where the Space and ``from_pretrained`` find them.

``targets_dir()`` is ``$DVP_TARGETS`` when set, else ``dvp_hub/targets`` under the user's cache
(``$XDG_CACHE_HOME`` or ``~/.cache``). Each target is a pipeline folder named after it: ``TARGETS/NAME/``.
A name is letters, digits, ``.``, ``_`` and ``-`` (no ``/``: a name with one is a Hub repo id).
"""

from __future__ import annotations

import os
import re

NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}$")


def targets_dir(override: str | None = None) -> str:
    """The targets folder: ``override``, else ``$DVP_TARGETS``, else ``~/.cache/dvp_hub/targets`` (not created)."""
    if override:
        return os.path.abspath(os.path.expanduser(override))
    if os.environ.get("DVP_TARGETS"):
        return os.path.abspath(os.path.expanduser(os.environ["DVP_TARGETS"]))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "dvp_hub", "targets")


def is_name(text: str) -> bool:
    """Whether ``text`` can name a target in the folder (and so is neither a path nor a Hub id)."""
    return bool(NAME.match(text)) and ".." not in text


def list_targets(folder: str | None = None) -> dict[str, str]:
    """``{name: pipeline folder}`` of the complete targets (a ``model_index.json``) in the targets folder, sorted."""
    root = targets_dir(folder)
    if not os.path.isdir(root):
        return {}
    out = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if is_name(name) and os.path.isfile(os.path.join(path, "model_index.json")):
            out[name] = path
    return out


def find_target(name: str, folder: str | None = None) -> str | None:
    """The pipeline folder of target ``name`` in the targets folder, or None."""
    return list_targets(folder).get(name) if is_name(name) and name != "demo" else None
