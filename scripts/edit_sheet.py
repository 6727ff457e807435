"""A contact sheet of the Edit controls at the ends of their ranges, for a person to look at.

    python scripts/edit_sheet.py --target demo --frames 100 600 --output model_cards/demo_edit_ranges.jpg

Each row is one training frame of the target: the frame as generated, then each control at the end of the range
`DeepVideoPortraitPipeline.edit_ranges` gives for that frame (what the Edit tab's sliders allow). Tiles are the
target's crop cut from the pasted-back full frame at its native size (no resampling of the output).
"""

from __future__ import annotations

import argparse

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.evaluate_measures import contact_sheet

# (title, control, which end of its range)
EDITS = (
    ("blink, top", "blink", 1),
    ("jaw open, top", "jaw_open", 1),
    ("smile, top", "smile", 1),
    ("smile, bottom", "smile", 0),
    ("brows, top", "brows", 1),
    ("yaw, left end", "yaw", 0),
    ("yaw, right end", "yaw", 1),
)


def row(pipe, frame: int) -> tuple[list, list[str]]:
    """The tiles of one frame and their titles (with the amounts the range allows)."""
    ranges = pipe.edit_ranges(frame)
    cut = pipe.target.crop.cut  # the crop's square at native size, no resampling
    tiles, titles = [cut(pipe.edit(frame, watermark=False))], [f"frame {frame}"]
    for title, control, end in EDITS:
        amount = ranges[control][end]
        if control == "yaw":
            img = pipe.edit(frame, yaw=amount, watermark=False)
        else:
            img = pipe.edit(frame, expression={control: amount}, watermark=False)
        tiles.append(cut(img))
        titles.append(f"{title} ({amount:+.1f}{' deg' if control == 'yaw' else ' sd'})")
    return tiles, titles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="demo")
    p.add_argument("--frames", type=int, nargs="+", default=[100, 600])
    p.add_argument("--output", required=True)
    args = p.parse_args()
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    rows, titles = zip(*(row(pipe, f) for f in args.frames))
    height = min(t.shape[0] for r in rows for t in r)
    contact_sheet(list(rows), args.output, titles=[" / ".join(dict.fromkeys(t)) for t in zip(*titles)], height=height)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
