"""One ResNet-50 training step, fp32 against the training job's fast path (bf16 autocast and
channels_last, used on CUDA and on CPUs with native bf16), in the same process:

    python benchmarks/bench_train_step.py [--size 64] [--batch 128] [--threads 2]
"""

import time

import click
import torch
from torch import nn

from pipeline.model import build_model
from pipeline.training import fast_path


@click.command()
@click.option("--size", default=64, show_default=True)
@click.option("--batch", default=128, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(size, batch, threads):
    torch.set_num_threads(threads)
    x, y = torch.randn(batch, 3, size, size), (torch.rand(batch) < 0.5).float()
    print("fast path on this CPU:", fast_path(torch.device("cpu")))
    a, b = median_step(x, y, False), median_step(x, y, True)
    print(f"{size} px, batch {batch}, {threads} threads: fp32 {a:.2f} s/step, "
          f"bf16 + channels_last {b:.2f} s/step: {a / b:.2f}x")  # fmt: skip


def median_step(x, y, fast, n=6):
    """Median seconds a step of n, the first (warm-up) left out."""
    torch.manual_seed(0)
    m = build_model()
    if fast:
        m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    xi = x.contiguous(memory_format=torch.channels_last) if fast else x
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            loss = nn.functional.binary_cross_entropy_with_logits(m(xi).squeeze(1).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[len(times[1:]) // 2]


if __name__ == "__main__":
    main()
