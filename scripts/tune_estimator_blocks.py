"""Measure the Triton estimator kernels' block sizes on a CUDA device (a measured choice).

For each paper shape (docs/method.md, Families; rho = 0.5, pruned for real as in ``scripts/bench_estimator.py``)
and batch, times the forward kernel over ``BLOCK_P`` (paths per inner step) and the backward kernel over ``BLOCK_P``
(paths per program) with ``triton.testing.do_bench`` (median of repeated launches, milliseconds), and
writes one CSV row per (shape, batch, kernel, block_p) with the time and its ratio to the current default.

Usage (CUDA only):
    python scripts/tune_estimator_blocks.py [--shapes A1,B1] [--batches 16,1024] [--out blocks.csv]
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_estimator import SHAPES, convert_shape  # noqa: E402

from glai.kernels.estimator import PathLayout, estimator_bwd, estimator_fwd  # noqa: E402
from glai.method.conversion import path_structure  # noqa: E402
from glai.method.heads import MLPHead, reduced_arch  # noqa: E402

FWD_BLOCKS = (16, 32, 64, 128, 256)
BWD_BLOCKS = (32, 64, 128, 256, 512)
DEFAULTS = {"fwd": 64, "bwd": 128}  # the defaults before this measurement


def main(argv: list[str] | None = None) -> None:
    import triton.testing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="A1,A2,B1,B2,C1,C2")
    parser.add_argument("--batches", default="16,1024")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "estimator-blocks-cuda.csv")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    device = torch.device("cuda")
    rows = []
    for name in args.shapes.split(","):
        arch = SHAPES[name]
        conv = convert_shape(name)
        selector = MLPHead(reduced_arch(arch, 0.5))
        selector.load_state_dict(conv["selector"])
        selector, used, counts = selector.to(device), conv["used"].to(device), conv["counts"]
        layout = PathLayout(conv["out_idx"], conv["in_idx"], conv["gate_idx"], n_in=conv["n_in"],
                            n_gates=int(used.numel()), n_out=arch[-1]).to(device)
        values = layout.to_layout(conv["values"].float().to(device))
        bias = torch.zeros(arch[-1], device=device)
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, arch[0], device=device)
            x_tilde = torch.cat([x, torch.ones(batch, 1, device=device)], 1)
            gates = path_structure(selector).gates(selector, x)[:, used]
            grad_y = torch.randn(batch, arch[-1], device=device)
            for kernel, blocks in (("fwd", FWD_BLOCKS), ("bwd", BWD_BLOCKS)):
                times = {}
                for bp in blocks:
                    if kernel == "fwd":
                        fn = functools.partial(estimator_fwd, x_tilde, gates, layout, values, bias, block_p=bp)
                    else:
                        fn = functools.partial(estimator_bwd, grad_y, x_tilde, gates, layout, block_p=bp)
                    times[bp] = triton.testing.do_bench(fn, warmup=25, rep=100)
                base = times[DEFAULTS[kernel]]
                best = min(times, key=times.get)
                for bp, ms in times.items():
                    rows.append(dict(shape=name, batch=batch, kernel=kernel, block_p=bp, ms=round(ms, 5),
                                     ratio_to_default=round(ms / base, 4), P=counts["P"]))
                print(f"{name} B{batch:<5} {kernel}: " + "  ".join(f"{bp}:{ms:.4f}" for bp, ms in times.items())
                      + f"   best {best} ({times[best] / base:.2f}x default)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
