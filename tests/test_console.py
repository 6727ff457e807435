"""The console says only what the user needs: exact stderr of a real `dvp reenact`, --verbose, fast failure."""

import re
import subprocess
import sys

from .conftest import clip


def _dvp(*args, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "dvp_hub.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DVP_VERBOSE": "", **(env or {})},
    )


def _lines(stderr: str) -> list[str]:
    """Console lines: tqdm redraws its bar with carriage returns, so each redraw is a line."""
    return [ln.strip() for ln in re.split(r"[\r\n]+", stderr) if ln.strip()]


def _bar_label(line: str) -> str | None:
    m = re.match(r"^(\[\d/\d\] [a-z ]+): +\d+%\|.*\| (\d+)/(\d+) ", line)
    return m.group(1) if m else None


def test_reenact_prints_one_numbered_bar_per_stage_and_nothing_else(tmp_path):
    out = tmp_path / "out.mp4"
    r = _dvp("reenact", "--source", clip("talking-d3.mp4"), "--output", str(out), "--max-frames", "12")
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stderr)
    labels = [_bar_label(ln) for ln in lines]
    assert None not in labels, [ln for ln in lines if _bar_label(ln) is None]  # no mediapipe/absl/glog lines
    assert list(dict.fromkeys(labels)) == ["[1/2] tracking the source", "[2/2] generating the target"]
    for label in set(labels):  # each bar ends at its total, which is the number of frames
        last = [ln for ln in lines if ln.startswith(label)][-1]
        assert re.search(r"\| 12/12 ", last), last
    first, *notes = r.stdout.splitlines()  # the summary, then only notes (here: the head held near the target's poses)
    assert first.startswith("12 frames in ") and all(n.startswith("note: ") for n in notes)


def test_verbose_brings_the_library_lines_back(tmp_path):
    r = _dvp(
        "--verbose",
        "track",
        clip("talking-d3.mp4"),
        "--output",
        str(tmp_path / "p.safetensors"),
        "--max-frames",
        "4",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "XNNPACK" in r.stderr or "W0000" in r.stderr
    r = _dvp(
        "track",
        clip("talking-d3.mp4"),
        "--output",
        str(tmp_path / "p.safetensors"),
        "--max-frames",
        "4",
        "--quiet",
        env={"DVP_VERBOSE": "1"},
    )
    assert "XNNPACK" in r.stderr or "W0000" in r.stderr
    r = _dvp(
        "track", clip("talking-d3.mp4"), "--output", str(tmp_path / "p.safetensors"), "--max-frames", "4", "--quiet"
    )
    assert r.stderr == ""


def test_a_bad_file_fails_with_one_line_before_torch_is_imported(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 1000)
    r = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "dvp_hub.cli",
            "reenact",
            "--source",
            str(bad),
            "--output",
            str(tmp_path / "o.mp4"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")]
    assert errors == [f"dvp reenact: error: {bad}: not a readable video (" + errors[0].split(" (", 1)[1]]
    imported = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    assert "torch" not in imported and "diffusers" not in imported and "mediapipe" not in imported


def test_python_api_prints_no_native_lines(tiny_pipeline, capfd):
    tiny_pipeline(source_video=clip("talking-d3.mp4"), max_frames=6, progress=False)
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "W0000" not in err and "absl" not in err, err
