"""dvp_hub: Deep Video Portraits (Kim et al., SIGGRAPH 2018), distributed the Hugging Face way."""

__version__ = "0.1.0"

from .errors import DVPError  # noqa: E402
from .models import PortraitTarget, RenderingToVideoGenerator, SpaceTimePatchDiscriminator  # noqa: E402
from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline, DeepVideoPortraitPipelineOutput  # noqa: E402

__all__ = [
    "DVPError",
    "DeepVideoPortraitPipeline",
    "DeepVideoPortraitPipelineOutput",
    "PortraitTarget",
    "RenderingToVideoGenerator",
    "SpaceTimePatchDiscriminator",
]
