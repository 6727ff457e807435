"""Train a target on a lent GPU machine in one call of at most 10 minutes, and bring it back.

The machine gets a copy of the working tree (64 MiB at most, carried paths included), has PyTorch, accelerate and
OpenCV but neither diffusers nor the ffmpeg and EfficientNet weight wheels, and sends back at most 8 files of
16 MiB. This script packs what a run needs into ``.gpu/`` (git-ignored), rebuilds the dataset's frames there and
collects the result in pieces small enough to come back (docs/training.md, "On a lent GPU machine"):

    python scripts/gpu_bundle.py pack --dataset data/obama18 --clip ../shared/data/target-obama-34s.mp4
    python scripts/gpu_bundle.py size                 # what would travel; over the limit it names what to leave
    python scripts/gpu_bundle.py make-room            # deletes committed pictures until it fits (git restores)
    # on the machine (the command in docs/training.md): unpack, train, collect into $OUT
    python training/export_target.py --generator_weights RETURNED_FOLDER --dataset_dir data/obama18 \\
        --output_dir runs/gpu/pipeline

The dataset travels as its source clip, face sequence and metadata (a few MB instead of its JPEG frames), and
``unpack`` rebuilds byte-identical frames with OpenCV's decoder (`dvp_hub.dataset.rebuild_frames`); hand-written
because no packaging tool knows what this machine lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = ".gpu"
LIMIT = 64 * 2**20  # the device tool's working tree, carried paths included
RETURN_SHARD = "15MB"  # files come back at most 16 MiB each
SHEET_FOLDERS = ("model_cards", "benchmarks", "docs")  # what make-room may take out for a run
WHEELS = ("diffusers", "efficientnet-lite-pytorch")  # missing on the machine; pure Python


def _git_files(*args: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def travelling_bytes(carry: str = BUNDLE) -> tuple[int, dict]:
    """Bytes of what a run would send (tracked and untracked-not-ignored files, and ``carry``), and per folder."""
    per: dict[str, int] = {}
    for f in _git_files() + _git_files("--others", "--exclude-standard"):
        top = os.path.dirname(f) or "."
        per[top] = per.get(top, 0) + os.path.getsize(os.path.join(ROOT, f))
    for dirpath, _, names in os.walk(os.path.join(ROOT, carry)):
        per[carry] = per.get(carry, 0) + sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
    return sum(per.values()), per


def cmd_size(_args) -> int:
    total, per = travelling_bytes()
    print(f"travels: {total / 2**20:.1f} MiB of {LIMIT / 2**20:.0f} MiB")
    if total <= LIMIT:
        return 0
    print("over the limit; the largest folders (delete some for the run, `git checkout -- PATH` brings them back):")
    for top, size in sorted(per.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {size / 2**20:6.1f} MiB  {top}")
    return 1


def cmd_make_room(_args) -> int:
    """Delete tracked pictures (contact sheets, benchmark figures) from the working tree, largest folder first,
    until a run fits; they are committed, and ``git checkout -- .`` brings them back after the run."""
    total, per = travelling_bytes()
    removed = []
    for folder, _ in sorted(per.items(), key=lambda kv: -kv[1]):
        if total <= LIMIT:
            break
        if folder.split("/")[0] not in SHEET_FOLDERS:
            continue
        for f in _git_files(folder):
            if os.path.dirname(f) == folder and f.endswith((".png", ".jpg")):
                total -= os.path.getsize(os.path.join(ROOT, f))
                os.remove(os.path.join(ROOT, f))
        removed.append(folder)
    print(f"removed the pictures of {', '.join(removed) or 'nothing'}; after the run: git checkout -- .")
    return cmd_size(_args)


def cmd_pack(args) -> int:
    from dvp_hub.dataset import load_dataset_meta  # lazy: pack runs here, where the package is installed
    from dvp_hub.perceptual import save_feature_weights  # lazy: as above

    meta = load_dataset_meta(args.dataset)
    if os.path.getsize(args.clip) != meta["source_bytes"]:
        print(
            f"error: {args.clip} is not {meta['source']}, the clip {args.dataset} was prepared from", file=sys.stderr
        )
        return 2
    out = os.path.join(ROOT, BUNDLE)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "dataset"))
    os.makedirs(os.path.join(out, "whl"))
    for name in ("dataset.json", "face_sequence.safetensors", "reference.png"):
        shutil.copy(os.path.join(args.dataset, name), os.path.join(out, "dataset", name))
    shutil.copy(args.clip, os.path.join(out, "clip.mp4"))
    save_feature_weights(os.path.join(out, "perceptual.safetensors"))
    pins = [f"{w}=={version(w)}" for w in WHEELS]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            os.path.join(out, "whl"),
        ]
        + pins,
        check=True,
    )
    print(f"packed {out}: dataset {meta['num_frames']} frames as its clip, wheels {', '.join(pins)}")
    return cmd_size(args)


def _cv2_frames(path: str):
    import cv2  # lazy: unpack runs on the GPU machine

    cap = cv2.VideoCapture(path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame[..., ::-1]
    finally:
        cap.release()


def cmd_unpack(_args) -> int:
    from dvp_hub.dataset import rebuild_frames  # lazy: after the carried wheels are on the path

    clip = os.path.join(ROOT, BUNDLE, "clip.mp4")
    n = rebuild_frames(os.path.join(ROOT, BUNDLE, "dataset"), clip, _cv2_frames(clip))
    print(f"rebuilt {n} frames")
    return 0


def cmd_collect(args) -> int:
    """The run's generator as fp16 shards, its training summary and last validation sheet, into ``out``."""
    import torch  # lazy: collect runs on the GPU machine

    from dvp_hub.models import RenderingToVideoGenerator  # lazy: as above

    gen = RenderingToVideoGenerator.from_pretrained(
        os.path.join(args.run, "pipeline", "generator"), torch_dtype=torch.float16
    )
    gen.save_pretrained(os.path.join(args.out, "generator"), max_shard_size=RETURN_SHARD)
    shutil.copy(os.path.join(args.run, "training.json"), os.path.join(args.out, "training.json"))
    sheets = sorted(os.listdir(os.path.join(args.run, "validation")))
    if sheets:
        shutil.copy(os.path.join(args.run, "validation", sheets[-1]), os.path.join(args.out, sheets[-1]))
    with open(os.path.join(args.out, "training.json")) as f:
        print(json.dumps(json.load(f), indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="write .gpu/: the dataset as its clip, the wheels, the perceptual weights")
    pk.add_argument("--dataset", required=True, help="a folder written by training/prepare_target.py")
    pk.add_argument("--clip", required=True, help="the video the dataset was prepared from")
    sub.add_parser("size", help="what a run would send, against the 64 MiB limit")
    sub.add_parser("make-room", help="delete tracked pictures from the tree until a run fits (git restores them)")
    sub.add_parser("unpack", help="on the machine: rebuild .gpu/dataset/frames from .gpu/clip.mp4")
    co = sub.add_parser("collect", help="on the machine: a finished run's generator in pieces that come back")
    co.add_argument("run", help="train_target.py's --output_dir")
    co.add_argument("out", help="where to write (the device tool's $OUT)")
    args = p.parse_args(argv)
    return {
        "pack": cmd_pack,
        "size": cmd_size,
        "make-room": cmd_make_room,
        "unpack": cmd_unpack,
        "collect": cmd_collect,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
