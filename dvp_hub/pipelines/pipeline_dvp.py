"""`DeepVideoPortraitPipeline`: source video -> face parameters -> conditioning -> target's frames."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from ..errors import TargetLoadError
from ..models import PortraitTarget, RenderingToVideoGenerator

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "demo_target")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
ALLOWED_CLASSES = {"RenderingToVideoGenerator", "PortraitTarget", "DeepVideoPortraitPipeline"}


@dataclass
class DeepVideoPortraitPipelineOutput(BaseOutput):
    """frames: ``(1, F, H, W, 3)`` floats in [0, 1] ("np"), ``(1, F, 3, H, W)`` ("pt") or a list of PIL lists;
    None when written straight to ``output_video``. fps: frame rate. parameters: the `FaceSequence` that
    drove the target. conditioning: the rendered conditioning of the last chunk (for previews)."""

    frames: object
    fps: float
    parameters: object = None
    stats: dict | None = None


def resolve_target(name_or_path: str, **hub_kwargs) -> str:
    """``demo``, a local folder or a Hub repo id -> a local pipeline folder (downloaded if needed)."""
    if name_or_path == "demo":
        if not os.path.isfile(os.path.join(DEMO_DIR, "model_index.json")):
            raise TargetLoadError("the bundled demo target is missing from this installation; reinstall dvp-hub.")
        return DEMO_DIR
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.exists(name_or_path) or name_or_path.startswith((".", "/", "~")) or ".." in name_or_path:
        raise TargetLoadError(f"{name_or_path}: not a target folder; give `demo`, a pipeline folder or a Hub id.")
    if not _REPO_ID.match(name_or_path):
        raise TargetLoadError(f"{name_or_path}: not a folder and not a valid Hub repo id (owner/name).")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(
            name_or_path, revision=hub_kwargs.get("revision"), cache_dir=hub_kwargs.get("cache_dir"),
            local_files_only=hub_kwargs.get("local_files_only", False), token=hub_kwargs.get("token"),
            allow_patterns=["*.json", "*.safetensors", "*.md"],
        )
    except LocalEntryNotFoundError:
        raise TargetLoadError(
            f"{name_or_path}: not in the local Hugging Face cache and the Hub cannot be reached (offline); "
            "download it once online or give a local folder."
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise TargetLoadError(f"{name_or_path}: could not download from the Hub ({str(err).splitlines()[0]}).") from None


def check_folder(folder: str) -> None:
    """Refuse repos with pickled weights or components outside dvp_hub, before anything is loaded."""
    import json

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
    for key in ("generator", "target"):
        lib_cls = spec.get(key)
        if not (isinstance(lib_cls, list) and len(lib_cls) == 2 and str(lib_cls[0]).startswith("dvp_hub")
                and lib_cls[1] in ALLOWED_CLASSES):
            raise TargetLoadError(f"{folder}: component {key!r} is {lib_cls!r}; only dvp_hub classes are loaded.")


class DeepVideoPortraitPipeline(DiffusionPipeline):
    r"""Deep Video Portraits: drive a target person with a source actor's head pose, expression and gaze.

    Components:
        generator ([`RenderingToVideoGenerator`]): the target's rendering-to-video network.
        target ([`PortraitTarget`]): the target's face model, crop, camera and training sequence.

    Example:
        ```py
        >>> from dvp_hub import DeepVideoPortraitPipeline, export_to_video
        >>> pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
        >>> out = pipe(source_video="../shared/data/talking-d3.mp4", max_frames=30)
        >>> export_to_video(out.frames[0], "reenacted.mp4", fps=out.fps, audio_from="../shared/data/talking-d3.mp4")
        ```
    """

    model_cpu_offload_seq = "generator"

    def __init__(self, generator: RenderingToVideoGenerator, target: PortraitTarget):
        super().__init__()
        self.register_modules(generator=generator, target=target)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs) -> "DeepVideoPortraitPipeline":
        """Load from ``demo``, a local folder, or a Hub repo id (downloaded with ``snapshot_download``).

        Accepts ``dtype``, ``variant`` ("fp16"), ``revision``, ``cache_dir``, ``local_files_only``, ``token``.
        """
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        folder = resolve_target(str(pretrained_model_name_or_path), **hub)
        check_folder(folder)
        if "torch_dtype" in kwargs:
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        variant = kwargs.get("variant")
        if variant and not os.path.isfile(os.path.join(folder, "generator", f"diffusion_pytorch_model.{variant}.safetensors")):
            raise TargetLoadError(f"{pretrained_model_name_or_path}: has no {variant!r} weights; load it without variant=.")
        try:
            pipe = super().from_pretrained(folder, use_safetensors=True, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise TargetLoadError(
                f"{pretrained_model_name_or_path}: cannot load the target ({str(err).splitlines()[0][:200]})."
            ) from None
        if pipe.target.dtype != torch.float32:
            pipe.target.to(torch.float32)  # face parameters stay in full precision
        return pipe

    def save_pretrained(self, save_directory: str, model_card=None, **kwargs) -> None:
        """Write fp32 and fp16 weights (``variant="fp16"``) and the model card, atomically."""
        save_directory = str(save_directory).rstrip("/")
        parent = os.path.dirname(os.path.abspath(save_directory))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        try:
            super().save_pretrained(tmp, safe_serialization=True)
            gen_dtype = self.generator.dtype
            self.generator.to(torch.float16)
            try:
                self.generator.save_pretrained(os.path.join(tmp, "generator"), variant="fp16", safe_serialization=True)
            finally:
                self.generator.to(gen_dtype)
            self.target.save_pretrained(os.path.join(tmp, "target"), variant="fp16", safe_serialization=True)
            if model_card is not None:
                model_card.save(os.path.join(tmp, "README.md"))
            elif os.path.isfile(os.path.join(save_directory, "README.md")):
                shutil.copy(os.path.join(save_directory, "README.md"), os.path.join(tmp, "README.md"))
            if os.path.exists(save_directory):
                old = tempfile.mkdtemp(prefix=".old-", dir=parent)
                os.replace(save_directory, os.path.join(old, "x"))
                os.replace(tmp, save_directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, save_directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def push_to_hub(self, repo_id: str, commit_message: str = "Upload Deep Video Portraits target", private=None,
                    token=None, model_card=None, **kwargs) -> str:
        """Save both weight sets and the card to a temporary folder, then ``upload_folder`` it."""
        from huggingface_hub import create_repo, upload_folder

        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "pipe")
            self.save_pretrained(folder, model_card=model_card)
            create_repo(repo_id, private=private, token=token, exist_ok=True)
            upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, token=token)
        return repo_id
