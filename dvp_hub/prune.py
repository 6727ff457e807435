"""A student generator cut out of its teacher: the channels that carry most of each layer's activity, with the
teacher's weights for them, so that distillation (`distill`) starts from a network that already draws the target.

`pruned_student(teacher, windows, base_channels, max_channels)` returns a `RenderingToVideoGenerator` with the
student's shape (`distill.student_generator`) whose every layer keeps, of the teacher's channels, those with the
largest mean absolute activation over ``windows`` (conditioning windows of the target's own frames). Skip
connections keep their pairing: an up level reads the kept channels of the level below it and of its mirrored down
level, in the teacher's order. Hand-written: Torch-Pruning (DepGraph) also prunes through concatenations, but in place,
leaving a diffusers config that no longer describes the network; the student here must be exactly
`distill.student_generator`'s shape, so that it saves and loads as one.
"""

from __future__ import annotations

import copy

import torch

from .distill import student_generator
from .errors import InputError
from .models.generator import RenderingToVideoGenerator


@torch.no_grad()
def channel_activity(teacher: RenderingToVideoGenerator, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean absolute activation per channel, over ``windows`` ``[B, 9*Nw, R, R]`` in [-1, 1], of each down level's
    output (``down{i}``) and of each up level's upsampled (``mid{i}``) and refined (``up{i}``) maps, after their
    activation, the teacher in eval mode."""
    acts: dict[str, torch.Tensor] = {}

    def keep(name, relu):
        def hook(_module, _inputs, out):
            x = torch.relu(out) if relu else out
            acts[name] = acts.get(name, 0) + x.abs().mean(dim=(0, 2, 3))

        return hook

    hooks = [d.act.register_forward_hook(keep(f"down{i}", False)) for i, d in enumerate(teacher.downs)]
    for i, u in enumerate(teacher.ups):
        hooks.append(u.norm1.register_forward_hook(keep(f"mid{i}", True)))
        hooks.append(u.norm2.register_forward_hook(keep(f"up{i}", True)))
    was_training = teacher.training
    teacher.eval()
    try:
        for chunk in windows.split(4):
            teacher(chunk.float())
    finally:
        teacher.train(was_training)
        for h in hooks:
            h.remove()
    return acts


def _top(activity: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(activity, k).indices).values  # the teacher's order


def _copy_conv(dst: torch.nn.Module, src: torch.nn.Module, out_idx, in_idx, transposed: bool = False) -> None:
    w = src.weight
    w = w[in_idx][:, out_idx] if transposed else w[out_idx][:, in_idx]
    dst.weight.copy_(w)
    if dst.bias is not None:
        dst.bias.copy_(src.bias[out_idx])


def _copy_norm(dst: torch.nn.Module, src: torch.nn.Module, idx) -> None:
    if isinstance(dst, torch.nn.BatchNorm2d):
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).copy_(getattr(src, name)[idx])


@torch.no_grad()
def pruned_student(
    teacher: RenderingToVideoGenerator,
    windows: torch.Tensor,
    base_channels: int = 16,
    max_channels: int = 128,
    recalibrate: bool = True,
) -> RenderingToVideoGenerator:
    """A student with ``base_channels`` / ``max_channels`` (at most the teacher's, level by level) initialised
    from the teacher's most active channels (module docstring), its BatchNorm statistics re-estimated on
    ``windows`` (``recalibrate``; else the teacher's, sliced). The result is in train mode, float32."""
    if teacher.dtype != torch.float32 or teacher.device != windows.device:
        teacher = copy.deepcopy(teacher).to(windows.device, torch.float32)  # the caller's teacher stays as it is
    student = student_generator(teacher, base_channels, max_channels).to(windows.device)
    wider = [
        i for i, (a, b) in enumerate(zip(student.downs, teacher.downs)) if a.conv.out_channels > b.conv.out_channels
    ]
    if wider:
        raise InputError(
            f"a pruned student cannot be wider than its teacher (level {wider[0]}); give base_channels and "
            f"max_channels at most the teacher's ({teacher.config.base_channels}, {teacher.config.max_channels})"
        )
    levels = len(teacher.downs)
    acts = channel_activity(teacher, windows)
    down_idx, prev = [], torch.arange(teacher.input_channels)
    for i, (d_s, d_t) in enumerate(zip(student.downs, teacher.downs)):
        idx = _top(acts[f"down{i}"], d_s.conv.out_channels)
        _copy_conv(d_s.conv, d_t.conv, idx, prev)
        _copy_norm(d_s.norm, d_t.norm, idx)
        down_idx.append(idx)
        prev = idx
    prev_t = 0  # channels of the teacher's map that an up level's skip is concatenated after
    for i, (u_s, u_t) in enumerate(zip(student.ups, teacher.ups)):
        if i > 0:
            prev = torch.cat([prev, prev_t + down_idx[levels - 1 - i]])
        mid = _top(acts[f"mid{i}"], u_s.up.out_channels)
        _copy_conv(u_s.up, u_t.up, mid, prev, transposed=True)
        _copy_norm(u_s.norm1, u_t.norm1, mid)
        out = torch.arange(u_t.refine.out_channels) if u_t.last else _top(acts[f"up{i}"], u_s.refine.out_channels)
        _copy_conv(u_s.refine, u_t.refine, out, mid)
        _copy_norm(u_s.norm2, u_t.norm2, out)
        prev, prev_t = out, u_t.refine.out_channels
    if recalibrate:
        recalibrate_batchnorm(student, windows)
    return student.train()


@torch.no_grad()
def recalibrate_batchnorm(net: torch.nn.Module, windows: torch.Tensor, batch: int = 8) -> None:
    """Re-estimate every BatchNorm's running statistics from ``windows`` (the teacher's no longer describe a layer
    whose inputs lost channels): the mean over whole batches of ``batch`` windows (all of them when fewer), ``net``
    left in the mode and with the momenta it had. Fast-path copies cached on ``net`` are dropped (their key does not
    see running statistics)."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta, was_training = [m.momentum for m in norms], net.training
    batch = min(batch, len(windows))
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches
        net.train()
        for start in range(0, len(windows) - batch + 1, batch):
            net(windows[start : start + batch].float())
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        net.train(was_training)
    for cached in ("_dvp_fast", "_dvp_compiled", "_dvp_int8"):
        net.__dict__.pop(cached, None)
