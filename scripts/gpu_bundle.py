"""Train a target on a lent GPU machine in one call of at most 10 minutes, and bring it back.

The machine gets a copy of the working tree (64 MiB at most, carried paths included), has PyTorch, accelerate and
OpenCV but neither diffusers nor the ffmpeg and EfficientNet weight wheels, and sends back at most 8 files of
16 MiB. This script packs what a run needs into ``.gpu/`` (git-ignored), rebuilds the dataset's frames there and
collects the result in pieces small enough to come back (docs/training.md, "On a lent GPU machine"):

    python scripts/gpu_bundle.py pack --dataset data/obama18 --clip ../shared/data/target-obama-34s.mp4
    python scripts/gpu_bundle.py size          # what would travel; over the limit it names the largest folders
    python scripts/gpu_bundle.py make-room     # deletes unmodified committed pictures until it fits
    # the device tool: run(command="bash scripts/gpu_train.sh", carry=[".gpu"]): unpack, train, collect into $OUT
    python scripts/gpu_bundle.py restore       # the pictures back
    python training/export_target.py --generator_weights RETURNED_FOLDER --dataset_dir data/obama18 \\
        --output_dir runs/gpu/pipeline

The dataset travels as its source clip, face sequence and metadata (a few MB instead of its JPEG frames); ``unpack``
rebuilds the frames with OpenCV's decoder (`dvp_hub.dataset.rebuild_frames`) and checks them against thumbnails of
the originals that ``pack`` stored. Hand-written: no packaging tool knows what this machine lacks.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, ".gpu")
# what make-room deleted, for restore (outside .gpu/, which pack replaces)
REMOVED = os.path.join(ROOT, ".gpu.removed")
LIMIT = 64 * 2**20  # the device tool's working tree, carried paths included
HEADROOM = 2 * 2**20  # make-room leaves this much under the limit (the tool may count a little differently)
RETURN_FILES, RETURN_BYTES = 8, 16 * 2**20  # what comes back from $OUT
RETURN_SHARD = "15MB"
SHEET_FOLDERS = ("model_cards", "benchmarks", "docs")  # what make-room may take out for a run
WHEELS = ("diffusers", "efficientnet-lite-pytorch")  # missing on the machine; pure Python
THUMB = 16  # px: each original frame's thumbnail, for unpack's check
THUMB_TOLERANCE = (
    4.0  # grey levels: another JPEG or H.264 build may round differently, a shifted frame differs by far more
)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _git_files(*args: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def travelling_bytes() -> tuple[int, dict]:
    """Bytes of what a run would send (tracked and untracked-not-ignored files, and ``.gpu/``), and per folder."""
    per: dict[str, int] = {}
    for f in _git_files() + _git_files("--others", "--exclude-standard"):
        top = os.path.dirname(f) or "."
        per[top] = per.get(top, 0) + os.path.getsize(os.path.join(ROOT, f))
    for dirpath, _, names in os.walk(BUNDLE):
        per[".gpu"] = per.get(".gpu", 0) + sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
    return sum(per.values()), per


def cmd_size(_args=None) -> int:
    total, per = travelling_bytes()
    print(f"travels: {total / 2**20:.1f} MiB of {LIMIT / 2**20:.0f} MiB")
    if total <= LIMIT:
        return 0
    print("over the limit (make-room deletes committed pictures for the run); the largest folders:")
    for top, size in sorted(per.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {size / 2**20:6.1f} MiB  {top}")
    return 1


def cmd_make_room(_args) -> int:
    """Delete committed, unmodified pictures (sheets, figures), largest folder first, until a run fits; their paths
    go to ``.gpu/removed.txt`` for `cmd_restore`."""
    if not os.path.isdir(BUNDLE):
        print("error: no .gpu/ bundle: run pack first", file=sys.stderr)
        return 2
    total, per = travelling_bytes()
    modified = set(_git_files("-m"))
    removed = []
    for folder, _ in sorted(per.items(), key=lambda kv: -kv[1]):
        if total <= LIMIT - HEADROOM:
            break
        if folder.split("/")[0] not in SHEET_FOLDERS:
            continue
        for f in _git_files(folder):
            if total <= LIMIT - HEADROOM:
                break
            if os.path.dirname(f) == folder and f.endswith((".png", ".jpg")) and f not in modified:
                total -= os.path.getsize(os.path.join(ROOT, f))
                with open(REMOVED, "a") as fh:  # recorded before it goes
                    fh.write(f"{f}\n")
                os.remove(os.path.join(ROOT, f))
                removed.append(f)
    print(f"deleted {len(removed)} committed pictures for the run; afterwards: python scripts/gpu_bundle.py restore")
    return cmd_size()


def cmd_restore(_args) -> int:
    """Check out again what make-room deleted (and nothing else), one path at a time."""
    paths = _read(REMOVED).decode().splitlines() if os.path.isfile(REMOVED) else []
    failed = [
        p
        for p in paths
        if subprocess.run(["git", "checkout", "HEAD", "--", p], cwd=ROOT, check=False, capture_output=True).returncode
    ]
    if failed:
        with open(REMOVED, "w") as fh:
            fh.writelines(f"{p}\n" for p in failed)
        print(
            f"error: git could not restore {len(failed)} of {len(paths)} pictures ({failed[0]}, ...)", file=sys.stderr
        )
        return 2
    if paths:
        os.remove(REMOVED)
    print(f"restored {len(paths)} pictures")
    return 0


def _fingerprint(frames_dir: str) -> tuple[np.ndarray, list[str]]:
    """A dataset's frames in name order, each file read once: ``[T, THUMB, THUMB, 3]`` uint8 area-averaged
    thumbnails and the files' sha256 digests."""
    import cv2  # lazy: size, make-room and restore start without OpenCV

    thumbs, digests = [], []
    for name in sorted(os.listdir(frames_dir)):
        data = _read(os.path.join(frames_dir, name))
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        thumbs.append(cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA))
        digests.append(hashlib.sha256(data).hexdigest())
    return np.stack(thumbs), digests


def cmd_pack(args) -> int:
    """Write ``.gpu/`` (built aside and moved in place whole): the dataset without its frames, thumbnails and
    hashes of those, the clip, the wheels and the perceptual weights."""
    from dvp_hub.dataset import check_source, load_dataset_meta  # lazy: torch; size and restore start fast
    from dvp_hub.errors import DVPError  # lazy: as above
    from dvp_hub.perceptual import save_feature_weights  # lazy: as above

    tmp = BUNDLE + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        meta = load_dataset_meta(args.dataset)
        check_source(meta, args.clip, args.dataset)
        os.makedirs(os.path.join(tmp, "dataset"))
        for name in ("dataset.json", "face_sequence.safetensors", "reference.png"):
            shutil.copy(os.path.join(args.dataset, name), os.path.join(tmp, "dataset", name))
        shutil.copy(args.clip, os.path.join(tmp, "clip.mp4"))
        thumbs, digests = _fingerprint(os.path.join(args.dataset, "frames"))
        np.save(os.path.join(tmp, "thumbs.npy"), thumbs)
        with open(os.path.join(tmp, "frames.sha256.json"), "w") as fh:
            json.dump(digests, fh)
        save_feature_weights(os.path.join(tmp, "perceptual.safetensors"))
        pins = [f"{w}=={version(w)}" for w in WHEELS]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d"]
        pip = subprocess.run([*cmd, os.path.join(tmp, "whl"), *pins], check=False, capture_output=True, text=True)
        if pip.returncode:
            last = (pip.stderr.strip().splitlines() or ["no message"])[-1]
            raise DVPError(f"pip could not download {', '.join(pins)} ({last}); pack needs the package registry")
    except (DVPError, OSError, PackageNotFoundError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"error: {err}", file=sys.stderr)
        return 2
    shutil.rmtree(BUNDLE, ignore_errors=True)
    os.replace(tmp, BUNDLE)
    print(f"packed .gpu/: {meta['num_frames']} frames as their clip, wheels {', '.join(pins)}")
    cmd_size()
    return 0


def cmd_unpack(_args) -> int:
    """On the machine: rebuild the frames from the clip, then check them against the packed thumbnails."""
    from dvp_hub.dataset import rebuild_frames  # lazy: after the carried wheels are on the path
    from dvp_hub.errors import DVPError  # lazy: as above
    from dvp_hub.video import opencv_frames  # lazy: as above

    clip, dataset = os.path.join(BUNDLE, "clip.mp4"), os.path.join(BUNDLE, "dataset")
    try:
        n = rebuild_frames(dataset, clip, opencv_frames(clip))
    except DVPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    thumbs, digests = _fingerprint(os.path.join(dataset, "frames"))
    worst = float(np.abs(thumbs.astype(np.float32) - np.load(os.path.join(BUNDLE, "thumbs.npy"))).max())
    same = sum(a == b for a, b in zip(digests, json.loads(_read(os.path.join(BUNDLE, "frames.sha256.json")))))
    print(f"rebuilt {n} frames: {same} byte-identical to the packed dataset's, thumbnails within {worst:.1f} levels")
    if worst > THUMB_TOLERANCE:
        print(
            f"error: the rebuilt frames are not the dataset's (a thumbnail differs by {worst:.0f} levels)",
            file=sys.stderr,
        )
        return 2
    return 0


def cmd_collect(args) -> int:
    """The run's generator as fp16 shards, its training summary and, where a file slot is left, the last validation
    sheet into ``out``; then a check that all of it comes back (8 files of 16 MiB, the log already there counted):
    exit 2 and a one-line error where it would not (the files stay written)."""
    import torch  # lazy: collect runs on the GPU machine

    from dvp_hub.models import RenderingToVideoGenerator  # lazy: as above

    folder = os.path.join(args.run, "pipeline", "generator")
    gen = RenderingToVideoGenerator.from_pretrained(folder, torch_dtype=torch.float16)
    gen.save_pretrained(os.path.join(args.out, "generator"), max_shard_size=RETURN_SHARD)
    shutil.copy(os.path.join(args.run, "training.json"), os.path.join(args.out, "training.json"))
    files = [p for p in glob.glob(os.path.join(args.out, "**"), recursive=True) if os.path.isfile(p)]
    sheets = sorted(glob.glob(os.path.join(args.run, "validation", "step-*.png")))
    if sheets and len(files) < RETURN_FILES:
        shutil.copy(sheets[-1], os.path.join(args.out, os.path.basename(sheets[-1])))
        files.append(sheets[-1])
    big = [p for p in files if os.path.getsize(p) > RETURN_BYTES]
    if len(files) > RETURN_FILES or big:
        print(
            f"error: {len(files)} files to bring back, {len(big)} over 16 MiB: they would not all come back",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(json.loads(_read(os.path.join(args.out, "training.json"))), indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="write .gpu/: the dataset as its clip, the wheels, the perceptual weights")
    pk.add_argument("--dataset", required=True, help="a folder written by training/prepare_target.py")
    pk.add_argument("--clip", required=True, help="the video the dataset was prepared from")
    sub.add_parser("size", help="what a run would send, against the 64 MiB limit")
    sub.add_parser("make-room", help="delete unmodified committed pictures until a run fits")
    sub.add_parser("restore", help="check out again what make-room deleted")
    sub.add_parser("unpack", help="on the machine: rebuild .gpu/dataset/frames from .gpu/clip.mp4 and check them")
    co = sub.add_parser("collect", help="on the machine: a finished run's generator in pieces that come back")
    co.add_argument("run", help="train_target.py's --output_dir")
    co.add_argument("out", help="where to write (the device tool's $OUT)")
    args = p.parse_args(argv)
    commands = {"pack": cmd_pack, "size": cmd_size, "make-room": cmd_make_room, "restore": cmd_restore}
    commands.update({"unpack": cmd_unpack, "collect": cmd_collect})
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
