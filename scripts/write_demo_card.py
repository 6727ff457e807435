"""Render the demo target's model card (dvp_hub/assets/demo_target/README.md and model_cards/demo-d6.md).

python scripts/write_demo_card.py --metrics '{"psnr": 22.19, "ssim": 0.8309}' \
    --evaluation benchmarks/results/evaluate_demo_d3_150.json
"""

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dvp_hub.model_card import render_model_card  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
PROVENANCE = (
    "Trained on `talking-d6.mp4` (480 x 480, 30 fps, 1,008 frames, 33.6 s), an example asset of the MIT-licensed "
    "LivePortrait repository (KwaiVGI/LivePortrait, `assets/examples/`), published there for face-animation research. "
    "No other data was used; the face-model basis of dvp_hub was built from six such public example clips."
)
CONSENT = (
    "We do not hold a separate consent from the person in the clip. This target exists only to demonstrate the "
    "technique offline: do not publish videos that put words or expressions in this person's mouth, and never "
    "remove the synthetic labels. To train a target of a real person, get their informed consent first."
)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", required=True, help="JSON of the validation metrics")
    ap.add_argument("--training", default="{}", help="JSON of extra training facts")
    ap.add_argument("--evaluation", default=None, help="a `dvp evaluate --json` file: its sources go in the card")
    args = ap.parse_args(argv)
    folder = os.path.join(ROOT, "dvp_hub", "assets", "demo_target")
    target_cfg = json.load(open(os.path.join(folder, "target", "config.json")))
    gen_cfg = json.load(open(os.path.join(folder, "generator", "config.json")))
    training = {
        "generator": f"U-Net, {gen_cfg['base_channels']} base channels, cap {gen_cfg['max_channels']}, "
        f"window {gen_cfg['temporal_window']} (16.2 M parameters, 7.1 GFLOP a frame)",
        "resolution": gen_cfg["resolution"],
        "loss": "cGAN + 100 x L1, Adam lr 2e-4, betas (0.5, 0.999)",
        **json.loads(args.training),
    }
    dataset = {
        "source": "talking-d6.mp4",
        "num_frames": target_cfg["num_frames"],
        "fps": target_cfg["fps"],
        "resolution": target_cfg["resolution"],
        "val_start": target_cfg["train_frames"],
        "val_fraction": 0.1,
    }
    driven = []
    if args.evaluation:
        with open(args.evaluation) as f:
            driven = json.load(f)["sources"]
    card = render_model_card(
        "demo-d6",
        json.loads(args.metrics),
        training,
        dataset,
        repo_id="demo",
        consent=CONSENT,
        provenance=PROVENANCE,
        driven=driven,
    )
    card.save(os.path.join(folder, "README.md"))
    shutil.copy(os.path.join(folder, "README.md"), os.path.join(ROOT, "model_cards", "demo-d6.md"))
    print("wrote", os.path.join(folder, "README.md"))


if __name__ == "__main__":
    main()
