#!/usr/bin/env python3
"""PyTorch's side of bench/conv: the same layer shapes at the same batch and thread count.
For each distinct conv of the practical's PreAct ResNet: conv forward, conv backward (input
and weight gradients together, as autograd computes them), and the batchnorm+ReLU that feeds
the conv (forward in training mode, backward). Each operation is timed in both memory
layouts (NCHW and channels_last) and the faster one is kept: PyTorch's best per operation.
Prints one line per layer: "C H K R stride fwd_ms bwd_ms bnrelu_fwd_ms bnrelu_bwd_ms".
  python3 bench/torch_layers.py [--threads 2] [--batch-size 128] [--reps 5]
"""
import argparse, statistics, time
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--reps", type=int, default=5)
a = p.parse_args()
torch.set_num_threads(a.threads)
N = a.batch_size
SHAPES = [(3, 32, 16, 3, 1, 1), (16, 32, 16, 3, 1, 1), (16, 32, 24, 3, 2, 1), (16, 32, 24, 1, 2, 0),
          (24, 16, 24, 3, 1, 1), (24, 16, 32, 3, 2, 1), (24, 16, 32, 1, 2, 0), (32, 8, 32, 3, 1, 1)]


def timed(fn):
    fn()
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


print(f"# torch {torch.__version__}, {a.threads} threads, batch {N}: C H K R stride fwd_ms bwd_ms bnrelu_fwd_ms bnrelu_bwd_ms")
for C, H, K, R, st, pad in SHAPES:
    best = [float("inf")] * 4
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(N, C, H, H).contiguous(memory_format=fmt).requires_grad_()
        w = (torch.randn(K, C, R, R) * 0.1).contiguous(memory_format=fmt).requires_grad_()
        y = F.conv2d(x, w, stride=st, padding=pad)
        gy = torch.randn_like(y)
        fwd = timed(lambda: F.conv2d(x, w, stride=st, padding=pad))
        bwd = timed(lambda: torch.autograd.grad(F.conv2d(x, w, stride=st, padding=pad), (x, w), gy)) - fwd
        g = torch.ones(C, requires_grad=True)
        b = torch.zeros(C, requires_grad=True)
        rm, rv = torch.zeros(C), torch.ones(C)
        bx = torch.randn(N, C, H, H).contiguous(memory_format=fmt).requires_grad_()
        run_bn = lambda: F.relu(F.batch_norm(bx, rm, rv, g, b, training=True, momentum=0.1, eps=1e-5))
        bo = run_bn()
        gb = torch.randn_like(bo)
        bnf = timed(run_bn)
        bnb = timed(lambda: torch.autograd.grad(run_bn(), (bx, g, b), gb)) - bnf
        best = [min(u, v) for u, v in zip(best, (fwd, bwd, bnf, bnb))]
    print(C, H, K, R, st, " ".join(f"{v:.3f}" for v in best), flush=True)
