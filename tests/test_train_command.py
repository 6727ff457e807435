"""`dvp train`: the footage check, then the whole job on a real clip in a tiny configuration, resumed, and the
target found by name by `from_pretrained`, the Space and `dvp reenact`."""

import os
import subprocess
import sys

import numpy as np
import pytest

from dvp_hub.video import VideoReader, probe_video, write_video

from .conftest import clip

TINY = "--generator_base_channels 4 --generator_max_channels 8 --discriminator_base_channels 4 --temporal_window 3"


def _dvp(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "dvp_hub.cli", *args], capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def test_check_refuses_footage_without_a_face_or_too_short(tmp_path):
    blank = tmp_path / "blank.mp4"
    write_video([np.full((96, 96, 3), 60, np.uint8)] * 30, blank, 30, synthetic=False)
    r = _dvp("train", str(blank), "--check")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "face" in r.stderr, r.stderr
    r = _dvp("train", clip("target-macron-50s.mp4"), "--check", "--max-frames", "300")  # 10 s
    assert r.returncode == 2 and "only 10.0 s" in r.stderr and "at least 15 s" in r.stderr, r.stderr


def test_check_says_what_the_target_will_do(tmp_path):
    r = _dvp("train", clip("target-macron-50s.mp4"), "--check", "--max-frames", "600")
    assert r.returncode == 0, r.stderr
    assert "20 s at 30 fps, 512 x 512" in r.stdout and "head" in r.stdout and "mouth" in r.stdout


@pytest.mark.slow
def test_train_end_to_end_resumes_and_the_target_is_found_by_name(tmp_path):
    from dvp_hub import DeepVideoPortraitPipeline

    targets = tmp_path / "targets"
    env = {"DVP_TARGETS": str(targets)}
    video = tmp_path / "me.mp4"  # 16 s of real speech
    write_video(VideoReader(clip("target-macron-50s.mp4"), max_frames=480), video, 30, synthetic=False)
    args = ["train", str(video), "--steps", "2", "--init-from", "none", "--resolution", "64", "--batch-size", "2"]
    args += ["--checkpoint-every", "1", "--train-args", TINY, "--launch-args", "--cpu --num_processes 1"]
    r = _dvp(*args, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "target 'me' in" in r.stdout and "nearest training frame" in r.stdout
    folder = targets / "me"
    card = (folder / "README.md").read_text()
    assert "PSNR" in card and "nearest training frame" in card and (folder / "contact_sheet.png").is_file()
    assert (folder / "detail_bank.jpg").is_file() and (folder / "detail_bank.json").is_file()  # its real detail
    other = tmp_path / "other.mp4"
    write_video(VideoReader(clip("target-macron-50s.mp4"), max_frames=470), other, 30, synthetic=False)
    refused = _dvp("train", str(other), "--name", "me", *args[2:], env=env)  # another video under the same name
    assert refused.returncode == 2 and "holds a run of other footage or settings (video, bytes" in refused.stderr
    again = _dvp(*args[:3], "3", *args[4:], env=env)  # one more step: resumed from the step-2 checkpoint
    assert again.returncode == 0, again.stderr[-3000:]
    assert "--resume_from_checkpoint latest" in again.stdout and "resumed from" in again.stdout + again.stderr
    os.environ["DVP_TARGETS"] = str(targets)
    try:
        from dvp_hub.space.common import target_choices

        assert target_choices() == ["demo", "me"]
        me = DeepVideoPortraitPipeline.from_pretrained("me")
        assert me.target.config.resolution == 64 and me.detail_bank.size == 128  # the crop enlarged to the bank's
    finally:
        del os.environ["DVP_TARGETS"]
    out = tmp_path / "out.mp4"
    r = _dvp("reenact", "--target", "me", "--source", clip("talking-d3.mp4"), "--output", str(out), "--max-frames", "8",
             env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert probe_video(out).num_frames == 8


def test_push_uploads_the_target_with_its_card_and_refuses_bad_input(tiny_pipeline, tmp_path, monkeypatch, capsys):
    """`dvp push` (the Hub itself patched: olah, the test Hub, is read-only): what it uploads loads as the target."""
    import shutil
    import types

    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    from dvp_hub import DeepVideoPortraitPipeline
    from dvp_hub.cli import main

    folder = tmp_path / "tiny"
    tiny_pipeline.save_pretrained(str(folder))
    (folder / "README.md").write_text("---\nlicense: other\n---\n# tiny\n")
    (folder / "notes.pkl").write_bytes(b"")  # never uploaded, and refused before anything is
    assert main(["push", str(folder), "someone/tiny"]) == 2
    assert "pickled weights" in capsys.readouterr().err
    (folder / "notes.pkl").unlink()
    assert main(["push", str(folder), "../etc"]) == 2 and "not a Hub repo id" in capsys.readouterr().err
    hub = tmp_path / "hub"
    calls = {}

    def create_repo(repo_id, private=None, token=None, exist_ok=False):
        calls["created"] = (repo_id, private)

    def upload_folder(repo_id, folder_path, allow_patterns, commit_message, token=None):
        files = [
            os.path.relpath(os.path.join(r, f), folder_path) for r, _, fs in os.walk(folder_path) for f in fs
        ]
        for rel in filter_repo_objects(files, allow_patterns=allow_patterns):
            os.makedirs(os.path.dirname(hub / repo_id / rel), exist_ok=True)
            shutil.copy(os.path.join(folder_path, rel), hub / repo_id / rel)
        return types.SimpleNamespace(repo_url=f"https://huggingface.co/{repo_id}")  # CommitInfo's field we read

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    assert main(["push", str(folder), "someone/tiny", "--private"]) == 0
    assert calls["created"] == ("someone/tiny", True) and "pushed" in capsys.readouterr().out
    pushed = hub / "someone" / "tiny"
    assert (pushed / "README.md").read_text().startswith("---\nlicense: other")
    assert DeepVideoPortraitPipeline.from_pretrained(str(pushed)).target.config.resolution == 64
