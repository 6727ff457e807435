"""What a media file holds, without decoding it: `probe_video` (size, rate, frame count, rotation, audio,
variable frame rate) and `read_metadata` (container tags), on the ffmpeg that imageio-ffmpeg ships."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from .errors import VideoReadError


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, after rotation is applied.

    width, height: size of the frames the reader yields (display orientation).
    fps: frames per second of the frames the reader yields. A variable-frame-rate file (a phone's: irregular
        timestamps, an average rate below the nominal one) is decoded at a constant rate, its nominal rate
        (at most 60 fps), each frame shown at its time: so ``num_frames / fps`` is the file's duration and a
        video written at ``fps`` keeps the source's timing and audio sync.
    num_frames: number of frames the reader yields.
    variable_rate: the file has irregular timestamps (decoded at the constant ``fps``, see above).
    rotation: the rotation flag in degrees (0, 90, 180, 270); frames are already rotated.
    has_audio: whether the file has an audio stream.
    duration: seconds.
    """

    path: str
    width: int
    height: int
    fps: float
    num_frames: int
    rotation: int
    has_audio: bool
    duration: float
    codec: str
    variable_rate: bool = False


def ffmpeg_lib():
    """The ``imageio_ffmpeg`` module (its wheel carries the ffmpeg binary), imported where a file is first probed,
    read or written: training on prepared frames imports this package on machines without that wheel."""
    import imageio_ffmpeg  # lazy: an optional dependency where no video is read or written (a GPU training box)

    return imageio_ffmpeg


def _ffmpeg() -> str:
    return ffmpeg_lib().get_ffmpeg_exe()


def _first_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if any(k in low for k in ("invalid data", "moov atom", "error", "no such file", "could not", "truncat")):
            return re.sub(r"^\[[^\]]*\]\s*", "", ln)
    return lines[-1] if lines else "unknown error"


def _ffmpeg_info(path: str) -> str:
    """What ``ffmpeg -i`` prints about a file (its stream and metadata description)."""
    return subprocess.run(
        [_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, errors="replace"
    ).stderr


def _has_audio(info: str) -> bool:
    return bool(re.search(r"Stream #\S+.*: Audio:", info))


_PROBED: OrderedDict = OrderedDict()  # (real path, size, mtime, inode) -> VideoInfo, the latest `_PROBED_MAX`
_PROBED_MAX = 64
_PROBED_LOCK = threading.Lock()


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header (and count its frames) without decoding it.

    Raises `VideoReadError` with a one-line message for missing, non-video, truncated and
    zero-frame files. A file probed before and unchanged since (same size, modification time and inode) is not
    probed again (counting the frames costs ffmpeg a pass over the file, and a run probes its source several
    times); each call returns its own `VideoInfo`.
    """
    path = str(path)
    if not os.path.exists(path):
        raise VideoReadError(f"{path}: no such file; check the path.")
    if os.path.isdir(path):
        raise VideoReadError(f"{path}: is a folder, not a video file.")
    st = os.stat(path)
    if st.st_size == 0:
        raise VideoReadError(f"{path}: the file is empty; give a video file (mp4, mov, webm, ...).")
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _PROBED_LOCK:
        known = _PROBED.get(key)
    if known is None:
        known = _probe(path)
        with _PROBED_LOCK:
            _PROBED[key] = known
            while len(_PROBED) > _PROBED_MAX:
                _PROBED.popitem(last=False)
    return replace(known, path=path)  # a copy: `VideoReader` corrects its size in place


def _probe(path: str) -> VideoInfo:
    """`probe_video` of an existing, non-empty file, probed by ffmpeg."""
    info = _ffmpeg_info(path)
    video_lines = [ln for ln in info.splitlines() if re.search(r"Stream #\S+.*: Video:", ln)]
    if not video_lines:
        if "Invalid data found" in info or "moov atom not found" in info:
            raise VideoReadError(
                f"{path}: not a readable video ({_first_error_line(info)}); the file is truncated or not a video."
            )
        if _has_audio(info):
            raise VideoReadError(f"{path}: has no video stream (audio only); give a video file.")
        raise VideoReadError(f"{path}: not a readable video ({_first_error_line(info)}).")
    vline = video_lines[0]
    if re.search(r"Video: (png|mjpeg|bmp|gif|webp)\b", vline) and "Duration: N/A" in info:
        raise VideoReadError(f"{path}: is a still image, not a video; give a video file.")
    codec = re.search(r"Video: (\w+)", vline).group(1)
    m = re.search(r", (\d{2,5})x(\d{2,5})", vline)
    if not m:
        raise VideoReadError(f"{path}: the video stream has no frame size; the file is damaged.")
    w, h = int(m.group(1)), int(m.group(2))
    m = re.search(r"([\d.]+) fps", vline)
    fps = float(m.group(1)) if m else 0.0
    m = re.search(r"([\d.]+)k? tbr", vline)
    tbr = float(m.group(1)) * (1000 if m and "k tbr" in m.group(0) else 1) if m else 0.0
    rotation = 0
    m = re.search(r"rotation of (-?[\d.]+) degrees", info) or re.search(r"rotate\s*:\s*(-?\d+)", info)
    if m:
        rotation = int(round(float(m.group(1)))) % 360
    if rotation in (90, 270):
        w, h = h, w
    has_audio = _has_audio(info)
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    try:
        num_frames, secs = ffmpeg_lib().count_frames_and_secs(path)
    except Exception as err:  # noqa: BLE001 - ffmpeg's failure becomes a one-line user error
        raise VideoReadError(f"{path}: cannot count the video's frames ({_first_error_line(str(err))}).") from None
    if num_frames <= 0:
        raise VideoReadError(f"{path}: the video has no frames; give a video with at least one frame.")
    if secs and secs > 0:
        duration = duration or secs
    video_seconds = secs if secs and secs > 0 else duration
    nominal = tbr or fps or 25.0
    # Frames missing from (or added to) the nominal grid: irregular timestamps, a phone's variable rate.
    variable = num_frames > 1 and video_seconds > 0 and abs(num_frames - video_seconds * nominal) > 0.5
    if variable:
        average = num_frames / video_seconds
        # Irregular timestamps: decode at a constant rate, every frame at its time (duplicated into gaps).
        fps = nominal if average < nominal <= 60 else average
        num_frames = _count_frames(path, fps)
    else:
        fps = fps or nominal
    return VideoInfo(path, w, h, fps, int(num_frames), rotation, has_audio, float(duration), codec, variable)


def _count_frames(path: str, fps: float) -> int:
    """Frames a decode at the constant rate ``fps`` yields: the same ffmpeg output options as `VideoReader`
    (a raw-video stream, gaps and a late start filled with the previous frame), at 16 x 16 to be cheap."""
    cmd = [_ffmpeg(), "-hide_banner", "-nostats", "-progress", "pipe:1", "-i", path, "-map", "0:v:0"]
    cmd += ["-r", f"{fps!r}", "-s", "16x16", "-pix_fmt", "rgb24", "-f", "rawvideo", "-y", os.devnull]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    counts = re.findall(r"^frame=(\d+)", proc.stdout, re.M)
    if proc.returncode or not counts:
        raise VideoReadError(f"{path}: cannot count the video's frames ({_first_error_line(proc.stderr)}).")
    return int(counts[-1])


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Container-level metadata tags of a media file (lower-case keys)."""
    tags: dict[str, str] = {}
    in_meta = False
    for ln in _ffmpeg_info(path).splitlines():
        if ln.startswith("Input #0"):
            continue
        if ln.strip() == "Metadata:" and not tags and not in_meta:
            in_meta = True
            continue
        if in_meta:
            m = re.match(r"\s{4}(\S[^:]*?)\s*:\s(.*)$", ln)
            if m and ln.startswith("    ") and not ln.startswith("      "):
                tags[m.group(1).lower()] = m.group(2)
            else:
                break
    return tags
