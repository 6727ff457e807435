"""Contact sheet of refiners on held-out frames of a pair folder, at full size: real | bilinear | each refiner.

    python scripts/refiner_sheet.py --pairs runs/refiner/pairs --refiner demo --refiner runs/refiner_tex/refiner \
        --out model_cards/refiner_sheet.jpg

``--refiner``: a refiner folder or a target (its refiner). Rows are held-out frames spread over the split; each
row is cut to the face box (widened by half) so that the sheet shows texture at native size. The scores
printed are `refiner_train.validate`'s on the same frames.
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from dvp_hub.refiner_data import load_pairs
from dvp_hub.refiner_train import initial_refiner, validate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", required=True)
    p.add_argument("--refiner", action="append", required=True)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    pairs = load_pairs(args.pairs)
    held = np.arange(pairs.meta["train_frames"], pairs.meta["frames"])
    picks = held[np.linspace(0, len(held) - 1, args.rows + 2).round().astype(int)[1:-1]].tolist()
    columns, scores = [], {}
    for spec in args.refiner:
        refiner = initial_refiner(spec).eval()
        score, crops = validate(refiner, pairs.generated, pairs.real, pairs.boxes, picks, pairs.correspondence)
        if not columns:
            columns.append([np.asarray(pairs.real[i]) for i in picks])
            up = [cv2.resize(np.asarray(pairs.generated[i]), crops.shape[1:3][::-1], interpolation=cv2.INTER_LINEAR) for i in picks]
            columns.append(up)
            scores["bilinear"] = score["bilinear"]
        columns.append(list(crops))
        scores[spec] = score["refined"]
    rows = []
    for r, i in enumerate(picks):
        x0, y0, x1, y1 = pairs.boxes[i]
        w, h = x1 - x0, y1 - y0
        size = pairs.real.shape[1]
        a, b = int(max(0, x0 - w / 4)), int(min(size, x1 + w / 4))
        c, d = int(max(0, y0 - h / 4)), int(min(size, y1 + h / 8))
        rows.append(np.concatenate([col[r][c:d, a:b] for col in columns], 1))
    width = max(row.shape[1] for row in rows)
    sheet = np.concatenate([np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0))) for row in rows], 0)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    print(json.dumps({"frames": picks, "columns": ["real", "bilinear", *args.refiner], "scores": scores}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
