"""dvp_hub: Deep Video Portraits (Kim et al., SIGGRAPH 2018), distributed the Hugging Face way.

The public classes load lazily (as in diffusers): ``import dvp_hub`` does not import torch, so the
command line checks its inputs and fails on a bad file in a fraction of a second.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from . import provenance  # noqa: F401, E402 - registers the C2PA signer every synthetic video is signed by
from .errors import DVPError

_LAZY = {
    "PortraitTarget": ".models",
    "RenderingToVideoGenerator": ".models",
    "SpaceTimePatchDiscriminator": ".models",
    "DeepVideoPortraitPipeline": ".pipelines.pipeline_dvp",
    "DeepVideoPortraitPipelineOutput": ".pipelines.pipeline_dvp",
    "export_to_video": ".export",
}

__all__ = ["DVPError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dvp_hub' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
