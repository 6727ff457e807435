"""Provenance: the visible label (`label`), the invisible watermark (`watermark`), C2PA Content Credentials
(`credentials`, registered as the video writer's signer on import) and `verify`, which reads all four."""

from . import credentials  # noqa: F401 - registers the C2PA signer with video.VideoWriter
