"""`dvp_hub.prune`: a student cut out of its teacher keeps the teacher's channels, weights and skip pairing."""

import torch

from dvp_hub.models.generator import RenderingToVideoGenerator
from dvp_hub.prune import channel_activity, pruned_student


def _teacher_with_dead_channels() -> RenderingToVideoGenerator:
    """A small teacher whose odd channels are silent in every layer (their maps are exactly zero)."""
    torch.manual_seed(0)
    t = RenderingToVideoGenerator(resolution=32, temporal_window=2, base_channels=8, max_channels=16, dropout=0.0)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # random statistics, so that eval mode is not the identity
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)

        def silence(conv, norm, transposed=False):
            dead = slice(1, None, 2)
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.weight[dead] = 0
                norm.bias[dead] = 0
            else:
                (conv.weight[:, dead] if transposed else conv.weight[dead]).zero_()
                if conv.bias is not None:
                    conv.bias[dead] = 0

        for d in t.downs:
            silence(d.conv, d.norm)
        for u in t.ups:
            silence(u.up, u.norm1, transposed=True)
            if not u.last:
                silence(u.refine, u.norm2)
    return t.eval()


def test_a_student_of_the_live_channels_is_the_teacher():
    teacher = _teacher_with_dead_channels()
    x = torch.rand(6, teacher.input_channels, 32, 32) * 2 - 1
    acts = channel_activity(teacher, x)
    assert all(float(a[1::2].abs().max()) == 0 for k, a in acts.items() if k != f"up{len(teacher.ups) - 1}")
    student = pruned_student(teacher, x, base_channels=4, max_channels=8, recalibrate=False).eval()
    assert student.downs[0].conv.out_channels == 4 and student.ups[-1].up.out_channels == 4
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 3
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x), atol=1e-5, rtol=1e-5)


def test_recalibrated_student_trains_from_the_teachers_statistics():
    teacher = _teacher_with_dead_channels()
    x = torch.rand(8, teacher.input_channels, 32, 32) * 2 - 1
    student = pruned_student(teacher, x, base_channels=4, max_channels=8)
    assert student.training
    norm = student.downs[1].norm
    with torch.no_grad():
        first = student.downs[0](x)
        conv = student.downs[1].conv(first)
    torch.testing.assert_close(norm.running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert norm.momentum == 0.1
