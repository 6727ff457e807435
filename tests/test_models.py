import pytest
import torch

from dvp_hub.models import GANLoss, RenderingToVideoGenerator, SpaceTimePatchDiscriminator


def test_paper_architecture_by_default():
    g = RenderingToVideoGenerator()
    assert [d.conv.out_channels for d in g.downs] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [u.refine.out_channels for u in g.ups] == [512, 512, 512, 512, 256, 128, 64, 3]
    assert [u.drop.p if hasattr(u.drop, "p") else 0 for u in g.ups] == [0.5, 0.5, 0.5, 0, 0, 0, 0, 0]
    assert isinstance(g.downs[0].norm, torch.nn.Identity) and isinstance(g.downs[1].norm, torch.nn.BatchNorm2d)
    assert isinstance(g.ups[-1].norm2, torch.nn.Identity)
    assert g.downs[0].conv.in_channels == 99


def test_tiny_shapes_and_range():
    g = RenderingToVideoGenerator(base_channels=4, max_channels=16, resolution=64, temporal_window=3)
    x = torch.randn(2, 27, 64, 64)
    y = g(x)
    assert y.shape == (2, 3, 64, 64) and y.abs().max() <= 1
    d = SpaceTimePatchDiscriminator(conditioning_channels=27, base_channels=4)
    logits = d(x, y)
    assert logits.shape == (2, 1, 6, 6)
    loss = GANLoss()
    assert loss(logits, True).item() > 0


def test_512_works_with_a_light_width():
    g = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=512, temporal_window=1)
    assert g(torch.randn(1, 9, 512, 512)).shape == (1, 3, 512, 512)


def test_config_round_trip(tmp_path):
    g = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=3).eval()
    g.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    back = RenderingToVideoGenerator.from_pretrained(tmp_path).eval()
    assert back.config.base_channels == 4 and back.config.temporal_window == 3
    x = torch.randn(1, 27, 64, 64)
    assert torch.allclose(g(x), back(x))


@pytest.mark.parametrize("kw", [{"resolution": 100}, {"resolution": 64, "num_levels": 9}, {"base_channels": 0}])
def test_bad_configs_raise(kw):
    with pytest.raises(ValueError):
        RenderingToVideoGenerator(**kw)


def test_wrong_channel_count_says_both_values():
    g = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=3)
    with pytest.raises(ValueError, match="expected 27 input channels.*got 9"):
        g(torch.randn(1, 9, 64, 64))


def test_fast_paths_match_the_plain_module():
    """Folded BatchNorm + channels_last (+ bf16 where the CPU has it), and the first level as a 3D convolution
    over time, give the plain fp32 module's frames within a few grey levels."""
    from dvp_hub.dataset import stack_windows
    from dvp_hub.models.inference import generate, generate_windows

    torch.manual_seed(0)
    gen = RenderingToVideoGenerator(base_channels=8, max_channels=16, resolution=64, temporal_window=4)
    with torch.no_grad():  # non-trivial BatchNorm statistics to fold
        for _ in range(3):
            gen(torch.rand(4, 36, 64, 64) * 2 - 1)
    gen.eval()
    clip = torch.rand(12, 9, 64, 64) * 2 - 1
    stacks = stack_windows(clip, 3, 12, 0, 4)
    plain = generate(gen, stacks, fast=False)
    assert torch.equal(generate_windows(gen, clip, fast=False), plain)
    for fast in (generate(gen, stacks), generate_windows(gen, clip.contiguous(memory_format=torch.channels_last))):
        assert fast.shape == (9, 3, 64, 64)
        diff = (fast - plain).abs()
        assert diff.max() < 0.03 and diff.mean() < 0.004, (diff.max(), diff.mean())


def test_bf16_is_chosen_by_measurement_and_can_be_forced(monkeypatch):
    """A CPU may report avx512_bf16 and still run bf16 slower than fp32: the fast path measures it once;
    DVP_BF16 overrides the choice either way."""
    from dvp_hub.models import inference

    cpu = torch.device("cpu")
    monkeypatch.setenv("DVP_BF16", "0")
    assert inference.bf16_supported(cpu) is False
    monkeypatch.setenv("DVP_BF16", "1")
    assert inference.bf16_supported(cpu) is True
    monkeypatch.delenv("DVP_BF16")
    measured = inference._bf16_faster_on_cpu()
    assert isinstance(measured, bool) and inference._bf16_faster_on_cpu() is measured  # once per process
    cap = torch.backends.cpu.get_cpu_capability().upper()
    assert inference.bf16_supported(cpu) == (("AVX512" in cap or "AMX" in cap) and measured)
