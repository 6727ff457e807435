"""Tracing (int8 conversion) and forward passes in other threads kept apart: the Space's Edit tab failed with
"module is not installed as a submodule" while a Live session converted a network to int8 (torch.fx patches every
module's __call__ while it traces)."""

from __future__ import annotations

import threading
import time

import torch

from dvp_hub.models.fx_guard import guarded, running, tracing


def test_a_trace_holds_other_threads_forwards_back_but_not_its_own():
    order, inside = [], threading.Event()

    def reader():
        inside.wait()
        with running():
            order.append("read")

    t = threading.Thread(target=reader)
    t.start()
    with tracing():
        with running():  # the tracing thread's own forward passes (calibration) go on
            order.append("own")
        inside.set()
        time.sleep(0.2)  # the reader waits all this time
        order.append("trace done")
    t.join(5)
    assert order == ["own", "trace done", "read"]


def test_fx_traces_beside_guarded_forwards_in_another_thread():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3)).eval()
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x, errors, stop = torch.zeros(1, 3, 16, 16), [], threading.Event()

    @guarded
    def forward():
        with torch.no_grad():
            return net(x)

    def run():
        try:
            while not stop.is_set():
                forward()
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    try:
        for _ in range(30):
            with tracing():
                torch.fx.symbolic_trace(other)
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors[:1]
