"""Error types for user-facing failures.

Every error a user can cause (a bad file, a missing target, a face that cannot be tracked) is a
`DVPError`: its message is one line that names the problem and says what to do. The CLI prints it
without a traceback and exits with code 2; the Space turns it into `gr.Error`.
"""


class DVPError(Exception):
    """Base class of user-facing errors: the message is one line that says what to do."""


class VideoReadError(DVPError):
    """A video file cannot be read: missing, not a video, truncated or without frames."""


class VideoWriteError(DVPError):
    """An output video cannot be written."""


class FaceTrackingError(DVPError):
    """No usable face track could be obtained from a video."""


class ParameterFileError(DVPError):
    """A face-parameter file is missing, truncated or of the wrong kind."""


class TargetLoadError(DVPError):
    """A target (pipeline folder or Hub repo) cannot be loaded safely."""


class InputError(DVPError, ValueError):
    """An argument is out of range or inconsistent with another."""
