"""`dvp_hub.prune`: a student cut out of its teacher keeps the teacher's channels, weights and skip pairing."""

import pytest
import torch

from dvp_hub.distill import student_generator, weights_digest
from dvp_hub.errors import InputError
from dvp_hub.models.generator import RenderingToVideoGenerator
from dvp_hub.prune import channel_activity, pruned_student, recalibrate_batchnorm


def _silence(conv, norm, dead, transposed=False) -> None:
    if isinstance(norm, torch.nn.BatchNorm2d):
        norm.weight[dead] = 0
        norm.bias[dead] = 0
    else:
        if transposed:
            conv.weight[:, dead] = 0
        else:
            conv.weight[dead] = 0
        if conv.bias is not None:
            conv.bias[dead] = 0


@torch.no_grad()
def _teacher_with_dead_channels(base: int, cap: int, innermost_norm: bool) -> RenderingToVideoGenerator:
    """A small 8/16 teacher in which, at every layer, as many channels as a ``base``/``cap`` student lacks there
    (drawn at random, layer by layer) are silent: their maps are exactly zero."""
    torch.manual_seed(0)
    t = RenderingToVideoGenerator(
        resolution=32, temporal_window=2, base_channels=8, max_channels=16, dropout=0.0, innermost_norm=innermost_norm
    )
    for m in t.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # random statistics, so that eval mode is not the identity
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    s = student_generator(t, base, cap)

    def dead(teacher_width, student_width):
        return torch.randperm(teacher_width)[: teacher_width - student_width]

    for dt, ds in zip(t.downs, s.downs):
        _silence(dt.conv, dt.norm, dead(dt.conv.out_channels, ds.conv.out_channels))
    for ut, us in zip(t.ups, s.ups):
        _silence(ut.up, ut.norm1, dead(ut.up.out_channels, us.up.out_channels), transposed=True)
        if not ut.last:
            _silence(ut.refine, ut.norm2, dead(ut.refine.out_channels, us.refine.out_channels))
    return t.eval()


@pytest.mark.parametrize("base,cap,innermost_norm", [(4, 8, False), (4, 16, True)])
def test_a_student_of_the_live_channels_is_the_teacher(base, cap, innermost_norm):
    teacher = _teacher_with_dead_channels(base, cap, innermost_norm)
    x = torch.rand(6, teacher.input_channels, 32, 32) * 2 - 1
    student = pruned_student(teacher, x, base_channels=base, max_channels=cap, recalibrate=False).eval()
    assert student.config.base_channels == base and student.config.max_channels == cap
    assert student.config.innermost_norm == innermost_norm
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x), atol=1e-5, rtol=1e-5)
    kept = channel_activity(teacher, x)["down0"] > 0  # the live channels are the ones kept, in the teacher's order
    torch.testing.assert_close(student.downs[0].conv.weight, teacher.downs[0].conv.weight[kept])


def test_a_student_cannot_be_wider_than_its_teacher():
    teacher = _teacher_with_dead_channels(4, 8, False)
    with pytest.raises(InputError, match="at most the teacher's"):
        pruned_student(teacher, torch.zeros(2, teacher.input_channels, 32, 32), base_channels=16, max_channels=16)


def test_batchnorm_is_recalibrated_on_whole_batches_and_the_net_left_as_it_was():
    net = _teacher_with_dead_channels(4, 8, False)  # eval mode
    x = torch.rand(20, net.input_channels, 32, 32) * 2 - 1
    recalibrate_batchnorm(net, x, batch=8)  # two batches of 8; the last 4 windows make no batch
    assert not net.training and net.downs[1].norm.momentum == 0.1
    with torch.no_grad():
        conv = net.downs[1].conv(net.downs[0](x[:16]))
    batches = conv.unflatten(0, (2, 8))
    norm = net.downs[1].norm
    torch.testing.assert_close(norm.running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    unbiased = batches.transpose(1, 2).flatten(2).var(dim=2, unbiased=True).mean(0)  # per batch, then averaged
    torch.testing.assert_close(norm.running_var, unbiased, atol=1e-4, rtol=1e-4)


def test_a_networks_digest_names_its_weights_not_the_folder_it_came_from(tmp_path):
    net = RenderingToVideoGenerator(resolution=32, temporal_window=2, base_channels=4, max_channels=8)
    for name in ("a", "b"):
        net.save_pretrained(tmp_path / name)
    a, b = (RenderingToVideoGenerator.from_pretrained(tmp_path / n) for n in ("a", "b"))
    assert weights_digest(a) == weights_digest(b) == weights_digest(net)
    with torch.no_grad():
        b.downs[0].conv.weight[0, 0, 0, 0] += 1
    assert weights_digest(a) != weights_digest(b)
