"""The loop's clock waits for the device (issue 21): on CUDA a timer read without a synchronisation measures the
kernels' launch, not their work."""

import torch

from glai.training import loop


def test_wall_clock_synchronises_cuda_only(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(torch.device(device)))
    t0 = loop.wall_clock("cpu")
    assert synced == []
    t1 = loop.wall_clock(torch.device("cuda", 0))
    assert synced == [torch.device("cuda", 0)] and t1 >= t0


def test_every_timer_of_the_loop_reads_the_device_clock(monkeypatch):
    """fit / run_epochs read no other clock: each read names the data's device."""
    devices = []
    monkeypatch.setattr(loop, "wall_clock", lambda device=None: devices.append(torch.device(device)) or 0.0)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: (_ for _ in ()).throw(AssertionError("a raw clock read")))
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    hist = loop.fit(model, (x, y), (x, y), optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=8, max_epochs=2,
                    patience=None)
    assert hist.epochs == 2 and len(devices) >= 2 * 3 and set(devices) == {torch.device("cpu")}
