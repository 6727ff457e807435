"""Write a target's model card from its dataset, its pipeline folder and a `dvp evaluate --json` file.

python scripts/write_target_card.py --name obama-34s --dataset_dir data/obama-34s --evaluation runs/eval/obama-34s.json \
    --training "steps=13316" --training "training time=7.5 min on one H100" --demo

Writes ``model_cards/NAME.md`` (and the contact sheet beside it); ``--demo`` also writes the bundled demo
target's card (``dvp_hub/assets/demo_target/README.md``).
"""

import argparse
import json
import os
import shutil


from dvp_hub.model_card import self_reenactment_card

ROOT = os.path.join(os.path.dirname(__file__), "..")
PROVENANCE = {
    "target-obama-34s.mp4": (
        "Trained on `target-obama-34s.mp4`: 34 s of a White House weekly presidential address by Barack Obama "
        "(1280 x 720, pillarboxed, 30 fps), as committed for research in deerajnagothu/face2face-demo (`obama.mp4`). "
        "The footage is a work of the US federal government and in the public domain, which is why this is the one "
        "target whose weights are redistributed."
    ),
    "target-macron-50s.mp4": (
        "Trained on `target-macron-50s.mp4`: 50 s of a televised address by Emmanuel Macron (512 x 512, 30 fps), "
        "from the research repository sstzal/DFRF (`dataset/vids/french.mp4`). Broadcast footage: the weights are "
        "not redistributed."
    ),
    "target-anchor-71s.mp4": (
        "Trained on `target-anchor-71s.mp4`: 71 s of a news anchor talking to camera (512 x 512, 25 fps, mp3 audio), "
        "from the research repository sstzal/DFRF (`dataset/vids/cnn2_25fps.mp4`). Broadcast footage: the weights "
        "are not redistributed."
    ),
    "target-lieu-60s.mp4": (
        "Trained on `target-lieu-60s.mp4`: 60 s of a congressman's video address (256 x 256, 25 fps), from the "
        "research repository tanshuai0219/EDTalk (`test_data/pose_source2.mp4`). The weights are not redistributed."
    ),
}
CONSENT = (
    "We hold no consent from the person shown. {who} This target exists only as a research demonstration of the "
    "technique: do not publish videos that put words or expressions in this person's mouth, never remove the "
    "synthetic labels, and do not use it for political, commercial or deceptive purposes. To train a target of a "
    "real person, get their informed consent first."
)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--evaluation", required=True, help="a `dvp evaluate --json` file (its contact sheets beside it)")
    ap.add_argument("--training", action="append", default=[], help='"key=value" rows of the training table')
    ap.add_argument("--limits", default=None)
    ap.add_argument("--demo", action="store_true", help="also write the bundled demo target's card")
    args = ap.parse_args(argv)
    with open(os.path.join(args.dataset_dir, "dataset.json")) as f:
        dataset = json.load(f)
    with open(args.evaluation) as f:
        ev = json.load(f)
    sr = ev["self_reenactment"]
    sheet_src = os.path.splitext(args.evaluation)[0] + "_self.png"
    sheet = None
    if os.path.isfile(sheet_src):
        sheet = f"{args.name}_self.png"
        shutil.copy(sheet_src, os.path.join(ROOT, "model_cards", sheet))
    public = "The footage is public-domain government footage of a real public figure." if "obama" in args.name else ""
    card = self_reenactment_card(
        args.name,
        dataset,
        sr,
        {
            "generator": "U-Net, 32 base channels, cap 256, window 11 (16.2 M parameters, 7.1 GFLOP a frame)",
            "resolution": dataset["resolution"],
            "loss": "cGAN + 100 x L1 (x5 inside the mouth and eye boxes), Adam lr 2e-4, betas (0.5, 0.999)",
            **dict(row.split("=", 1) for row in args.training),
        },
        repo_id="demo" if args.demo else args.name,
        consent=CONSENT.format(who=public),
        provenance=PROVENANCE.get(dataset["source"], f"Trained on `{dataset['source']}`."),
        driven=ev["sources"],
        sheet=sheet,
        limits=args.limits,
    )
    out = os.path.join(ROOT, "model_cards", f"{args.name}.md")
    card.save(out)
    print("wrote", out)
    if args.demo:
        demo = os.path.join(ROOT, "dvp_hub", "assets", "demo_target", "README.md")
        if sheet:  # the package carries no images: say where the sheet is
            line = f"![contact sheet: held-out frame, diffuse render, output]({sheet})"
            card.text = card.text.replace(
                line,
                f"Contact sheet (held-out frame | diffuse render | output): `model_cards/{sheet}` in the dvp_hub repository.",
            )
        card.save(demo)
        print("wrote", demo)


if __name__ == "__main__":
    main()
