"""The commands that make and publish targets: `dvp train VIDEO` (a target of one's own in one command) and
`dvp push DIR owner/name`.

`dvp train`:

1. the footage check (`footage.analyse` and `footage.assess`): refused footage stops here with one line;
2. the dataset (`dataset.prepare_target_dataset`, reusing the check's tracking), in ``OUTPUT.work/dataset``;
3. training through ``accelerate launch training/train_target.py`` (so ``accelerate config`` settings, several
   GPUs and several machines apply as accelerate users expect), from the demo generator by default, checkpoints
   in ``OUTPUT.work/run``: the same command again resumes from the latest, and Ctrl-C leaves one; ``--minutes``
   is the whole budget, counting resumed runs, so the same command with a larger one trains on;
4. the exported pipeline folder moved to ``OUTPUT`` (default: the targets folder, ``dvp_hub.targets``, by name);
5. self-reenactment on the held-out frames beside the baselines (`evaluate.self_reenactment`), a contact sheet
   and the model card with those figures, in ``OUTPUT``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

from .dataset import prepare_target_dataset
from .detail_bank import BANK_FILES
from .errors import DVPError, InputError
from .evaluate import self_reenactment
from .footage import analyse, assess
from .model_card import self_reenactment_card
from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline
from .pipelines.target_folder import REFERENCE_FILES, check_folder, is_hub_id
from .refiner_data import detail_bank_from_video
from .targets import is_name, targets_dir

TRAIN_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training", "train_target.py")
# The recipe the demo target measured best with (its model card): a tight head-and-shoulders crop, the mouth and
# eyes weighted 5x in the L1, pix2pixHD feature matching, fine-tuned from the demo generator.
CROP_SCALE = 1.8
RECIPE = ("--region_weight", "4", "--lambda_feature_matching", "10")
CONSENT = (
    "Trained with `dvp train` on footage its maker states they have the right to use. Every output is labelled "
    "synthetic; do not pass it off as real footage."
)


def target_name(video: str, name: str | None) -> str:
    """``name``, else the video's file name made into a target name."""
    stem = name or re.sub(r"[^\w.-]+", "-", os.path.splitext(os.path.basename(video))[0]).strip("-.") or "target"
    if not is_name(stem):
        raise InputError(f"{stem!r}: a target name is letters, digits, '.', '_' and '-' (give --name).")
    return stem


def check(args):
    """The footage check, printed; returns the `Footage` (raises `InputError` where it cannot work)."""
    footage = analyse(args.video, max_frames=args.max_frames)
    sentences, refusal = assess(footage)
    print(f"{args.video}:")
    for line in sentences:
        print(f"  - {line}")
    if refusal:
        raise InputError(refusal)
    return footage


def launch_command(args, dataset: str, run: str, name: str) -> list[str]:
    """``accelerate launch`` of the training script with the recipe, the budget and the experts' options."""
    if not os.path.isfile(TRAIN_SCRIPT):
        raise DVPError(f"{TRAIN_SCRIPT}: the training script is missing; run dvp train from a dvp_hub checkout.")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *shlex.split(args.launch_args or ""), TRAIN_SCRIPT]
    cmd += ["--dataset_dir", dataset, "--output_dir", run, "--target_name", name, *RECIPE]
    cmd += ["--resolution", str(args.resolution)]
    cmd += ["--train_batch_size", str(args.batch_size), "--checkpointing_steps", str(args.checkpoint_every)]
    cmd += ["--validation_steps", str(args.checkpoint_every), "--checkpoints_total_limit", "2"]
    cmd += ["--max_train_steps", str(args.steps or 10**9)]
    if args.minutes:
        cmd += ["--max_train_minutes", str(args.minutes)]
    if args.init_from != "none":
        cmd += ["--init_from", args.init_from]
    if any(d.startswith("checkpoint-") for d in (os.listdir(run) if os.path.isdir(run) else [])):
        cmd += ["--resume_from_checkpoint", "latest"]
    return cmd + shlex.split(args.train_args or "")


def add_detail_bank(folder: str, video: str) -> None:
    """Write the target's detail bank (`refiner_data.detail_bank_from_video`) into its ``folder``."""
    pipe = DeepVideoPortraitPipeline.from_pretrained(folder)
    detail_bank_from_video(pipe, video).save(folder)


def evaluate_and_card(folder: str, video: str, dataset: str, name: str, training: dict) -> dict:
    """Self-reenactment of the held-out frames beside the baselines, a contact sheet and the card, in ``folder``."""
    pipe = DeepVideoPortraitPipeline.from_pretrained(folder)
    sheet = os.path.join(folder, "contact_sheet.png")
    sr = self_reenactment(pipe, video, sheet=sheet)
    with open(os.path.join(dataset, "dataset.json")) as f:
        meta = json.load(f)
    card = self_reenactment_card(
        name, meta, sr, training, repo_id=name, consent=CONSENT, sheet="contact_sheet.png",
        provenance=f"Trained on `{os.path.basename(video)}`.",
    )
    card.save(os.path.join(folder, "README.md"))
    with open(os.path.join(folder, "evaluation.json"), "w") as f:
        json.dump(sr, f, indent=1, default=float)
    return sr


def _same_job(work: str, args) -> dict:
    """A rerun goes on with the same footage and settings; another video under the same name is refused (its
    dataset and checkpoints would be silently reused). Returns the job, for `cmd_train` to record once the footage
    passed its check."""
    job = {
        "video": os.path.abspath(args.video),
        "bytes": os.path.getsize(args.video),
        "resolution": args.resolution,
        "max_frames": args.max_frames,
    }
    path = os.path.join(work, "job.json")
    if os.path.isfile(path):
        with open(path) as f:
            before = json.load(f)
        if before != job:
            changed = ", ".join(k for k in job if before.get(k) != job[k])
            raise InputError(
                f"{work} holds a run of other footage or settings ({changed} differ); give another --name or --output, "
                "or delete that folder to start over."
            )
    return job


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def cmd_train(args) -> int:
    if args.check:
        check(args)
        return 0
    name = target_name(args.video, args.name)
    out = os.path.abspath(args.output or os.path.join(targets_dir(args.targets_dir), name))
    if os.path.isdir(out) and not os.path.isfile(os.path.join(out, "model_index.json")) and os.listdir(out):
        raise InputError(f"{out}: exists and is not a target folder; give --output a new folder (or a target's).")
    work = out + ".work"
    dataset, run = os.path.join(work, "dataset"), os.path.join(work, "run")
    if not os.path.isfile(args.video):
        raise InputError(f"{args.video}: no such video; check the path.")
    job = _same_job(work, args)  # before the check's minute of tracking: a wrong rerun fails at once
    footage = check(args)
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "job.json"), "w") as f:
        json.dump(job, f)
    if not os.path.isfile(os.path.join(dataset, "dataset.json")):
        os.makedirs(work, exist_ok=True)
        meta = prepare_target_dataset(
            args.video, dataset, args.resolution, crop_scale=CROP_SCALE, max_frames=args.max_frames, footage=footage
        )
        print(f"dataset: {meta['num_frames']} frames in {dataset}")
    cmd = launch_command(args, dataset, run, name)
    print("training:", " ".join(shlex.quote(c) for c in cmd[3:]), flush=True)
    proc = subprocess.Popen(cmd, start_new_session=True)  # its own group: Ctrl-C is passed on below, once
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the training writes a checkpoint on SIGINT: wait until every process of it is gone
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        while _group_alive(proc.pid):
            time.sleep(0.2)
        print(f"dvp train: interrupted; run the same command again to go on from the checkpoint in {run}", file=sys.stderr)
        return 130
    if code:
        raise DVPError(
            f"training stopped (exit {code}); its checkpoints are in {run}: run the same command again to go on."
        )
    if os.path.exists(out):
        shutil.rmtree(out)
    shutil.copytree(os.path.join(run, "pipeline"), out + ".partial")
    add_detail_bank(out + ".partial", args.video)
    os.replace(out + ".partial", out)
    budget = f"{args.minutes:g} min" if args.minutes else f"{args.steps} steps"
    training = {"command": "dvp train", "budget": f"{budget} in all (resumed runs count together)"}
    summary = os.path.join(run, "training.json")  # steps, time, losses: what the training actually did
    if os.path.isfile(summary):
        with open(summary) as f:
            training.update(json.load(f))
    sr = evaluate_and_card(out, args.video, dataset, name, training)
    near = sr["baseline_nearest_frame"]["psnr"]
    print(
        f"target {name!r} in {out}: held-out PSNR {sr['psnr']:.2f} dB (nearest training frame {near:.2f} dB), "
        f"SSIM {sr['ssim']:.3f}; card and contact sheet beside it. Drive it: dvp reenact --target {name} --source VIDEO"
    )
    return 0


def cmd_push(args) -> int:
    """Publish a target folder (weights, card, reference frame) to the Hub as ``owner/name``."""
    from huggingface_hub import create_repo, upload_folder  # lazy: looked up at call time: tests patch the Hub's calls

    check_folder(args.folder)
    if not is_hub_id(args.repo_id):
        raise InputError(f"{args.repo_id}: not a Hub repo id; give owner/name.")
    if not os.path.isfile(os.path.join(args.folder, "README.md")):
        raise InputError(f"{args.folder}: has no model card (README.md); a target is published with its card.")
    try:
        create_repo(args.repo_id, private=args.private, token=args.token, exist_ok=True)
        info = upload_folder(
            repo_id=args.repo_id,
            folder_path=args.folder,
            allow_patterns=["*.json", "*.safetensors", "*.md", "*.png", *REFERENCE_FILES, *BANK_FILES],
            commit_message=args.message,
            token=args.token,
        )
    except Exception as err:  # noqa: BLE001 - the Hub's errors (auth, network, permissions) in one line
        raise DVPError(f"could not push to {args.repo_id}: {str(err).splitlines()[0][:200]}") from None
    print(f"pushed {args.folder} to {getattr(info, 'repo_url', args.repo_id)}")
    return 0
