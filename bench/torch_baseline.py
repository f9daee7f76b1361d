#!/usr/bin/env python3
"""PyTorch baseline for bench/train_step: the same model (tools/convnet_torch.py), batch,
random data and thread count; forward + cross-entropy + backward + SGD step (or eval).
Last line: "torch_train_step img/s: <number>" (or torch_eval_step).
  python3 bench/torch_baseline.py [--steps 20] [--threads 2] [--batch-size 128] [--eval] [--device cpu|cuda]
      [--layout nchw|channels_last]
"""
import argparse, os, statistics, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from convnet_torch import ResNet  # noqa: E402  (the project's own definition)

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=20)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--eval", action="store_true")
p.add_argument("--device", default="cpu")
p.add_argument("--layout", default="nchw", choices=["nchw", "channels_last"],
               help="memory format of the model and input (channels_last is oneDNN's fast CPU layout)")
a = p.parse_args()
torch.set_num_threads(a.threads)
dev = torch.device(a.device)
if dev.type == "cuda":
    torch.backends.cudnn.benchmark = True
model = ResNet().to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
x = torch.randn(a.batch_size, 3, 32, 32, device=dev)
if a.layout == "channels_last":
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (a.batch_size,), device=dev)
times = []
for s in range(a.steps + 2):
    t0 = time.perf_counter()
    if a.eval:
        model.eval()
        with torch.no_grad():
            F.cross_entropy(model(x), y)
    else:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    if s >= 2:
        times.append(time.perf_counter() - t0)
med = statistics.median(times)
kind = "eval" if a.eval else "train"
print(f"torch {torch.__version__} {a.device} {a.layout} {kind} batch {a.batch_size}, {a.threads} threads: median {med * 1e3:.1f} ms/step")
print(f"torch_{kind}_step img/s: {a.batch_size / med:.1f}")
