"""Networks and components. This module is the stable import path recorded in ``model_index.json``."""

# diffusers finds a custom component's loading methods by looking these names up in its module.
from diffusers.configuration_utils import ConfigMixin  # noqa: F401
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401

from .discriminator import GANLoss, SpaceTimePatchDiscriminator
from .generator import RenderingToVideoGenerator
from .refiner import FaceRefiner
from .target import PortraitTarget

# model_index.json records each component's module: pin it to this stable path so that moving a file
# never breaks published targets.
for _cls in (RenderingToVideoGenerator, SpaceTimePatchDiscriminator, PortraitTarget, FaceRefiner):
    _cls.__module__ = __name__

__all__ = ["RenderingToVideoGenerator", "SpaceTimePatchDiscriminator", "GANLoss", "PortraitTarget", "FaceRefiner"]
