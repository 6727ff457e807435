"""Network benchmark: training steps/s and inference ms/frame of the paper and light generators.

    python benchmarks/bench_network.py [--device cuda] [--json out.json]

Inference at 256 x 256, batch 1 (latency) and batch 8 (throughput). For the paper configuration it
compares, in the same run: the FLOP-limit time (FLOPs / measured matmul throughput at the same
precision), plain eager fp32, and faster paths (BatchNorm folded into the convolutions + channels_last +
inference_mode; bf16 autocast; torch.compile), with the largest output difference of each.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dvp_hub.models import GANLoss, RenderingToVideoGenerator, SpaceTimePatchDiscriminator  # noqa: E402
from dvp_hub.models.inference import fold_batchnorm  # noqa: E402

CONFIGS = {"paper": dict(base_channels=64, max_channels=512), "light": dict(base_channels=32, max_channels=256)}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, dev, reps, warm=2):
    for _ in range(warm):
        fn()
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(dev)
    return (time.perf_counter() - t) / reps


def matmul_throughput(dev, dtype):
    n = 4096 if dev.type == "cuda" else 1024
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    sec = timeit(lambda: a @ b, dev, 20 if dev.type == "cuda" else 5)
    return 2 * n**3 / sec


def flops(model, x):
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    return fc.get_total_flops()


def train_steps_per_s(cfg, dev, batch, steps, amp):
    g = RenderingToVideoGenerator(**cfg).to(dev)
    d = SpaceTimePatchDiscriminator().to(dev)
    loss = GANLoss().to(dev)
    og = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    x = torch.randn(batch, 99, 256, 256, device=dev)
    y = torch.rand(batch, 3, 256, 256, device=dev) * 2 - 1

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            fake = g(x)
            logits = d(torch.cat([x, x]), torch.cat([y, fake.detach()]))
            r, f = logits.chunk(2)
            ld = 0.5 * (loss(r, True) + loss(f, False))
        od.zero_grad()
        ld.backward()
        od.step()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            lg = loss(d(x, fake), True) + 100 * torch.nn.functional.l1_loss(fake, y)
        og.zero_grad()
        lg.backward()
        og.step()

    return 1.0 / timeit(step, dev, steps, warm=2)


def _args(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--compile", action="store_true", help="also try torch.compile (slow to build on CPU)")
    return ap.parse_args(argv)


def main(argv=None):
    args = _args(argv)
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    reps = 50 if gpu else 3
    tput32 = matmul_throughput(dev, torch.float32)
    tput16 = matmul_throughput(dev, torch.bfloat16)
    print(
        f"device {dev} ({torch.cuda.get_device_name() if gpu else f'{torch.get_num_threads()} threads'}): "
        f"matmul {tput32 / 1e9:.0f} GFLOP/s fp32{' (tf32)' if gpu else ''}, {tput16 / 1e9:.0f} GFLOP/s bf16"
    )
    for name, cfg in CONFIGS.items():
        g = RenderingToVideoGenerator(**cfg).to(dev).eval()
        for bs in [1, 8] if gpu else [1]:
            x = torch.randn(bs, 99, 256, 256, device=dev)
            fl = flops(g, x[:1])
            with torch.inference_mode():
                ref = g(x).float()
                eager = timeit(lambda: g(x), dev, reps)
                fast = fold_batchnorm(g).to(memory_format=torch.channels_last)
                xc = x.contiguous(memory_format=torch.channels_last)
                folded = timeit(lambda: fast(xc), dev, reps)
                err_f = (fast(xc).float() - ref).abs().max().item()

                def bf16():
                    with torch.autocast(dev.type, dtype=torch.bfloat16):
                        return fast(xc)

                t_bf = timeit(bf16, dev, reps)
                err_bf = (bf16().float() - ref).abs().max().item()
            row = {
                "config": name,
                "device": dev.type,
                "batch": bs,
                "gflop_per_frame": round(fl / 1e9, 2),
                "flop_limit_ms_fp32": round(fl / tput32 * 1e3, 2),
                "flop_limit_ms_bf16": round(fl / tput16 * 1e3, 2),
                "eager_fp32_ms": round(eager / bs * 1e3, 2),
                "folded_cl_fp32_ms": round(folded / bs * 1e3, 2),
                "folded_cl_fp32_maxdiff": err_f,
                "folded_cl_bf16_ms": round(t_bf / bs * 1e3, 2),
                "folded_cl_bf16_maxdiff": err_bf,
            }
            if args.compile or gpu:
                comp = torch.compile(fast)

                def compiled():
                    with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
                        return comp(xc)

                compiled()
                row["compiled_bf16_ms"] = round(timeit(compiled, dev, reps) / bs * 1e3, 2)
                with torch.inference_mode():
                    row["compiled_bf16_maxdiff"] = (compiled().float() - ref).abs().max().item()
            rows.append(row)
            print(json.dumps(row))

        for bs in [16] if gpu else [1]:
            sps = train_steps_per_s(cfg, dev, bs, 20 if gpu else 2, amp=gpu)
            row = {
                "config": name,
                "device": dev.type,
                "train_batch": bs,
                "train_steps_per_s": round(sps, 3),
                "train_frames_per_s": round(sps * bs, 1),
                "precision": "bf16 autocast" if gpu else "fp32",
            }
            rows.append(row)
            print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
