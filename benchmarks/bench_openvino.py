"""OpenVINO against the project's fast path for the live path's one-window generator call (batch 1, 256 px).

    pip install openvino   # not a dependency of dvp_hub: this script says so and exits where it is missing
    python benchmarks/bench_openvino.py [--target demo] [--threads 2]

The project's path: `generate_windows` on one window of 11 conditioning frames (the first level as a 3D convolution
over time, the rest folded, channels_last, compiled by inductor where a C++ compiler is found; bf16 where it measures
faster). OpenVINO: every level after the first, converted with `openvino.convert_model` and compiled for the CPU in
fp32 and in bf16, the first level still computed in torch. Medians of 40 calls after 5 warm-up calls, and the
largest output difference against the project's path on [-1, 1]. Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from timing import median_ms  # benchmarks/timing.py, beside this script

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.models.inference import _fast, fold_batchnorm, generate_windows, input_dtype


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="demo")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        import openvino as ov  # lazy: optional dependency (openvino) only this benchmark needs; missing, it says so
    except ImportError:
        print("openvino is not installed (pip install openvino); nothing to compare", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    gen = DeepVideoPortraitPipeline.from_pretrained(args.target).generator.float().eval()
    _, net, conv3d = _fast(gen)
    w, size = gen.config.temporal_window, gen.config.resolution
    clip = torch.rand(w, 9, size, size).contiguous(memory_format=torch.channels_last)
    ref = generate_windows(gen, clip, compiled=True)
    print(f"torch {torch.__version__}, openvino {ov.__version__}, {args.threads} threads, input {input_dtype(gen)}")
    print(f"project's path, compiled: {median_ms(lambda: generate_windows(gen, clip, compiled=True)):.1f} ms")
    print(f"project's path, eager:    {median_ms(lambda: generate_windows(gen, clip, compiled=False)):.1f} ms")

    x = clip.permute(1, 0, 2, 3)[None].contiguous(memory_format=torch.channels_last_3d)

    def first_level():
        with torch.inference_mode():
            return net.downs[0].act(conv3d(x)[0].transpose(0, 1)).contiguous()

    class Rest(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, first):
            return self.model.forward_from_first_level(first)

    with torch.no_grad():  # converted from a fresh fold: tensors made under inference_mode cannot be traced
        model = ov.convert_model(Rest(fold_batchnorm(gen)).eval(), example_input=first_level().clone())
    core = ov.Core()
    for precision in ("f32", "bf16"):
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        request = core.compile_model(model, "CPU", {**config, "INFERENCE_NUM_THREADS": args.threads})
        request = request.create_infer_request()
        first = first_level().numpy()
        out = request.infer({0: first})[0]
        total = median_ms(lambda: request.infer({0: first_level().numpy()}))
        rest = median_ms(lambda: request.infer({0: first}))
        diff = float(np.abs(out - ref.numpy()).max())
        print(
            f"openvino {precision}: {total:.1f} ms with the first level in torch ({rest:.1f} ms the rest alone), "
            f"max difference {diff:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
