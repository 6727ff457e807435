"""Saving and publishing a `DeepVideoPortraitPipeline` (a mixin): fp32 and fp16 weights, the reference frame and
the model card, written atomically; `push_to_hub` uploads the same folder."""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile

import torch

from ..video import current_umask


def _drop_local_path(index: str) -> None:
    """diffusers records the folder a pipeline or component was loaded from as ``_name_or_path``: a local path that
    means nothing to whoever downloads the folder."""
    with open(index) as f:
        spec = json.load(f)
    if spec.pop("_name_or_path", None) is not None:
        with open(index, "w") as f:
            json.dump(spec, f, indent=2, sort_keys=True)
            f.write("\n")


def _user_modes(folder: str) -> None:
    """Give every file under ``folder`` the mode the user's umask gives new files (safetensors are written 0600)."""
    mode = 0o666 & ~current_umask()
    for root, _, files in os.walk(folder):
        for name in files:
            os.chmod(os.path.join(root, name), mode)


class PipelineSaving:
    """``save_pretrained`` and ``push_to_hub`` for `DeepVideoPortraitPipeline` (placed before ``DiffusionPipeline``
    among its bases, whose ``save_pretrained`` it calls for the folder's layout)."""

    def save_pretrained(self, save_directory: str, model_card=None, **kwargs) -> None:
        """Write fp32 and fp16 weights (``variant="fp16"``) and the model card, atomically."""
        save_directory = str(save_directory).rstrip("/")
        parent = os.path.dirname(os.path.abspath(save_directory))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; the folder becomes the user's target
        try:
            super().save_pretrained(tmp, safe_serialization=True)
            self.target.save_pretrained(os.path.join(tmp, "target"), variant="fp16", safe_serialization=True)
            for name in ("generator", "refiner", "live_generator"):
                if getattr(self, name) is not None:  # the fp16 copy is cast from a copy: in place would round fp32
                    half = torch.nn.Module.half(copy.deepcopy(getattr(self, name)))  # no ModelMixin.to warning
                    half.save_pretrained(os.path.join(tmp, name), variant="fp16", safe_serialization=True)
            for name in ["model_index.json", *(os.path.join(c, "config.json") for c in os.listdir(tmp))]:
                if os.path.isfile(os.path.join(tmp, name)):  # after the last write of each config
                    _drop_local_path(os.path.join(tmp, name))
            ref = getattr(self, "reference", None)
            if ref and os.path.isfile(ref):
                shutil.copy(ref, os.path.join(tmp, "reference" + os.path.splitext(ref)[1].lower()))
            if getattr(self, "detail_bank", None) is not None:
                self.detail_bank.save(tmp)
            if model_card is not None:
                model_card.save(os.path.join(tmp, "README.md"))
            elif os.path.isfile(os.path.join(save_directory, "README.md")):
                shutil.copy(os.path.join(save_directory, "README.md"), os.path.join(tmp, "README.md"))
            _user_modes(tmp)
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

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str = "Upload Deep Video Portraits target",
        private=None,
        token=None,
        model_card=None,
        **kwargs,
    ) -> str:
        """Save both weight sets and the card to a temporary folder, then ``upload_folder`` it."""
        from huggingface_hub import create_repo, upload_folder  # lazy: looked up at call time so tests can patch them

        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "pipe")
            self.save_pretrained(folder, model_card=model_card)
            create_repo(repo_id, private=private, token=token, exist_ok=True)
            upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, token=token)
        return repo_id
