"""Where a target comes from and whether it is safe to load: ``demo``, a target of the local targets folder (by
name, `dvp_hub.targets`), a local folder or a Hub repo id.

`resolve_target` turns a name into a local pipeline folder (downloading Hub repos with
``snapshot_download``); `check_folder` refuses, before anything is loaded, folders with pickled
weights, components outside dvp_hub, or configs asking for absurd sizes (`LIMITS`).
"""

from __future__ import annotations

import json
import os
import re

from ..detail_bank import BANK_FILES
from ..errors import TargetLoadError
from ..targets import find_target, is_name, targets_dir

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "demo_target")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
COMPONENT_CLASSES = {  # what each component of a target folder must be
    "generator": "RenderingToVideoGenerator",
    "target": "PortraitTarget",
    "refiner": "FaceRefiner",
    "live_generator": "RenderingToVideoGenerator",
}
OPTIONAL_COMPONENTS = ("refiner", "live_generator")  # a target folder may leave these out
REFERENCE_FILES = ("reference.png", "reference.jpg", "reference.mp4")  # the target's full frame, for paste-back


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the form of a Hub repo id (``owner/name``)."""
    return bool(_REPO_ID.match(text)) and ".." not in text


def resolve_target(name_or_path: str, local_paths: bool = True, **hub_kwargs) -> str:
    """``demo``, a name in the targets folder, a local folder or a Hub repo id -> a local pipeline folder
    (downloaded if needed). ``local_paths=False`` (the Space) accepts no folder paths: only ``demo``, the targets
    folder's names and Hub ids, and its errors never say what exists on disk."""
    if name_or_path == "demo":
        if not os.path.isfile(os.path.join(DEMO_DIR, "model_index.json")):
            raise TargetLoadError("the bundled demo target is missing from this installation; reinstall dvp-hub.")
        return DEMO_DIR
    if local_paths and os.path.isdir(name_or_path):
        return name_or_path  # a folder given by path wins over a target of the same name
    named = find_target(name_or_path)
    if named:
        return named
    if not local_paths:
        if not is_hub_id(name_or_path):
            raise TargetLoadError(
                f"{name_or_path[:100]!r} is not a target here: pick one from the list or give a Hub id."
            )
    elif os.path.isdir(name_or_path):
        return name_or_path
    elif os.path.exists(name_or_path) or name_or_path.startswith((".", "/", "~")) or ".." in name_or_path:
        raise TargetLoadError(f"{name_or_path}: not a target folder; give `demo`, a pipeline folder or a Hub id.")
    elif is_name(name_or_path):
        raise TargetLoadError(
            f"{name_or_path}: no such target in {targets_dir()} (train one with `dvp train VIDEO --name "
            f"{name_or_path}`), and not a folder or a Hub id (owner/name)."
        )
    if not is_hub_id(name_or_path):
        raise TargetLoadError(f"{name_or_path}: not a folder and not a valid Hub repo id (owner/name).")
    from huggingface_hub import snapshot_download  # lazy: the Hub client (~0.4 s), Hub ids only; the cli imports it
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError  # lazy

    try:
        return snapshot_download(
            name_or_path,
            revision=hub_kwargs.get("revision"),
            cache_dir=hub_kwargs.get("cache_dir"),
            local_files_only=hub_kwargs.get("local_files_only", False),
            token=hub_kwargs.get("token"),
            allow_patterns=["*.json", "*.safetensors", "*.md", *REFERENCE_FILES, *BANK_FILES],
        )
    except LocalEntryNotFoundError:
        raise TargetLoadError(
            f"{name_or_path}: not in the local Hugging Face cache and the Hub cannot be reached (offline); "
            "download it once online or give a local folder."
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise TargetLoadError(
            f"{name_or_path}: could not download from the Hub ({str(err).splitlines()[0]})."
        ) from None


def check_folder(folder: str) -> None:
    """Refuse repos with pickled weights or components outside dvp_hub, before anything is loaded."""
    index = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index):
        raise TargetLoadError(f"{folder}: no model_index.json; not a dvp_hub target folder.")
    for root, _, files in os.walk(folder):
        for f in files:
            if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")):
                raise TargetLoadError(f"{folder}: holds pickled weights ({f}); dvp_hub loads safetensors only.")
    try:
        with open(index) as fh:
            spec = json.load(fh)
    except ValueError:
        raise TargetLoadError(f"{index}: not valid JSON.") from None
    if spec.get("_class_name") != "DeepVideoPortraitPipeline":
        raise TargetLoadError(f"{folder}: model_index.json names {spec.get('_class_name')!r}, not a dvp_hub pipeline.")
    for key, cls in COMPONENT_CLASSES.items():
        lib_cls = spec.get(key)
        if key in OPTIONAL_COMPONENTS and lib_cls in (None, [None, None]):
            continue  # optional
        if not (isinstance(lib_cls, list) and len(lib_cls) == 2 and str(lib_cls[0]).startswith("dvp_hub")):
            raise TargetLoadError(f"{folder}: component {key!r} is {lib_cls!r}; only dvp_hub classes are loaded.")
        if lib_cls[1] != cls:
            raise TargetLoadError(f"{folder}: component {key!r} is a {lib_cls[1]!r}; it must be a {cls}.")
        if not os.path.isdir(os.path.join(folder, key)):
            raise TargetLoadError(f"{folder}: model_index.json names {key!r} but the folder has no {key}/.")
    _check_sizes(folder)


# Upper bounds a config must respect before anything is allocated (a hostile config could ask for terabytes).
LIMITS = {
    "generator": {
        "in_channels": 64,
        "temporal_window": 64,
        "base_channels": 1024,
        "max_channels": 4096,
        "resolution": 1024,
        "out_channels": 16,
    },
    "target": {"num_frames": 1_000_000, "num_expression": 1024, "resolution": 1024},
    "refiner": {"channels": 512, "num_blocks": 64, "scale": 8},
}
LIMITS["live_generator"] = LIMITS["generator"]


def _check_sizes(folder: str) -> None:
    for comp, limits in LIMITS.items():
        path = os.path.join(folder, comp, "config.json")
        if comp in OPTIONAL_COMPONENTS and not os.path.isdir(os.path.join(folder, comp)):
            continue  # optional
        try:
            with open(path) as fh:
                cfg = json.load(fh)
        except (OSError, ValueError):
            raise TargetLoadError(f"{folder}: {comp}/config.json is missing or not valid JSON.") from None
        for key, hi in limits.items():
            v = cfg.get(key)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= hi):
                raise TargetLoadError(
                    f"{folder}: {comp} config has {key}={v!r} (allowed: 1 to {hi}); refusing to load."
                )


def check_live_generator(generator_config, live_config, folder: str) -> None:
    """Refuse a ``live_generator`` that cannot stand in for the target's generator: the same conditioning in
    (channels, window, resolution) and the same frame out."""
    for key in ("in_channels", "temporal_window", "resolution", "out_channels"):
        if generator_config.get(key) != live_config.get(key):
            raise TargetLoadError(
                f"{folder}: live_generator has {key}={live_config.get(key)!r}, the generator "
                f"{generator_config.get(key)!r}: distil it again from this target (training/distill_live.py)."
            )


def reference_file(folder: str) -> str | None:
    """The target's full-frame reference (`REFERENCE_FILES`, first found) in ``folder``, or None."""
    for name in REFERENCE_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def weights_variant(component_dir: str) -> str | None:
    """``"fp16"`` where a component folder holds only fp16 weights (as the bundled demo ships), else None (fp32)."""
    full = os.path.isfile(os.path.join(component_dir, "diffusion_pytorch_model.safetensors"))
    half = os.path.isfile(os.path.join(component_dir, "diffusion_pytorch_model.fp16.safetensors"))
    return "fp16" if half and not full else None


def load_component(target: str, name: str, cls):
    """Component ``name`` (a ``cls``, e.g. ``RenderingToVideoGenerator``) of ``target`` (``demo``, a targets-folder
    name, a folder or a Hub id) alone, float32, in eval mode, without the rest of the pipeline; None where the
    target has no such component."""
    folder = os.path.join(resolve_target(target), name)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return None
    return cls.from_pretrained(folder, variant=weights_variant(folder)).float().eval()
