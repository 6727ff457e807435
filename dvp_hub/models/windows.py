"""Space-time windows: which frames a generator window holds, and their stacks of conditioning channels."""

from __future__ import annotations

import torch


def window_indices(t: int, window: int) -> list[int]:
    """Frames of the space-time window ending at ``t`` (clamped at the clip start), oldest first."""
    return [max(0, t - window + 1 + k) for k in range(window)]


def stack_windows(
    cond: torch.Tensor, start: int, stop: int, offset: int, window: int, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Space-time stacks ``[n, 9*Nw, R, R]`` of frames ``start..stop-1``; ``cond`` holds renders from ``offset`` on.

    Channel ``k * 9 + c`` is channel ``c`` of the k-th frame of the window (oldest first). The stack comes out
    in channels_last memory, the fast generator's layout, and in ``dtype``. Inference over clips does not
    stack at all (`models.inference.generate_windows`); training and evaluation of single frames do.
    """
    idx = torch.tensor([[max(i, offset) - offset for i in window_indices(t, window)] for t in range(start, stop)])
    lo, hi = int(idx.min()), int(idx.max()) + 1
    hwc = cond[lo:hi].permute(0, 2, 3, 1).to(dtype or cond.dtype)  # [F, R, R, 9]: a view for channels_last cond
    c = hwc[(idx - lo).flatten()]  # [n * Nw, R, R, 9], contiguous blocks
    n, r = idx.shape[0], hwc.shape[1]
    out = torch.empty(n, r, r, window * hwc.shape[3], dtype=hwc.dtype, device=hwc.device)
    out.view(n, r, r, window, -1).copy_(c.view(n, window, r, r, -1).permute(0, 2, 3, 1, 4))
    return out.permute(0, 3, 1, 2)
