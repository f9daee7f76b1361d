#!/usr/bin/env python3
"""The practical's Part 1 recipe in plain PyTorch, for a side-by-side run with apps/resnet
(bench only: needs torch; torchvision is used for the crop when present).

Same model (tools/convnet_torch.py), SGD (lr 0.1, momentum 0.9, weight
decay 1e-4), MultiStepLR (70, 90; gamma 0.1), batch 128 with drop_last, RandomHorizontalFlip +
RandomResizedCrop((32, 32), scale (0.8, 1.0), ratio (0.9, 1.1)) + normalization, validation
every 10 epochs and after the last, best-validation weights evaluated on the validation and
test sets. Same CIFAR-10 files and the same 45,000/5,000 split: the validation indices come
from split_val.txt, which apps/resnet writes next to its checkpoint.

Writes OUT/metrics.csv (the columns of apps/resnet's) and OUT/results.json.
  python3 bench/torch_practical.py --data DIR --split saved_models/practical2/ResNet/split_val.txt \\
      [--device cpu|cuda] [--epochs 100] [--threads 2] [--out runs/torch] [--max-steps N]
"""
import argparse, json, math, os, random, sys, time
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from convnet_torch import ResNet  # noqa: E402  (the project's own definition)

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)

p = argparse.ArgumentParser()
p.add_argument("--data", default=os.environ.get("CIFAR10_DIR", "data/cifar-10-batches-bin"))
p.add_argument("--split", default="saved_models/practical2/ResNet/split_val.txt")
p.add_argument("--device", default="cpu")
p.add_argument("--epochs", type=int, default=100)
p.add_argument("--milestones", default="70,90")
p.add_argument("--val-every", type=int, default=10)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--seed", type=int, default=42)
p.add_argument("--layout", default="channels_last", choices=["nchw", "channels_last"])
p.add_argument("--out", default="runs/torch_practical")
p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N steps (quick checks)")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
random.seed(a.seed)
dev = torch.device(a.device)
fmt = torch.channels_last if a.layout == "channels_last" else torch.contiguous_format


def load(names):
    xs, ys = [], []
    for n in names:
        raw = np.fromfile(os.path.join(a.data, n), dtype=np.uint8).reshape(-1, 3073)
        ys.append(raw[:, 0].astype(np.int64))
        xs.append(raw[:, 1:].reshape(-1, 3, 32, 32))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


xtr, ytr = load([f"data_batch_{i}.bin" for i in range(1, 6)])
xte, yte = load(["test_batch.bin"])
val_idx = torch.tensor([int(l) for l in open(a.split)], dtype=torch.long)
mask = torch.ones(len(xtr), dtype=torch.bool)
mask[val_idx] = False
train_idx = torch.nonzero(mask).flatten()
print(f"torch {torch.__version__} on {a.device}: train {len(train_idx)} / val {len(val_idx)} / test {len(xte)}", flush=True)

try:
    import torchvision.transforms.v2.functional as TF
except Exception:
    TF = None


def crop_params(h=32, w=32, scale=(0.8, 1.0), ratio=(0.9, 1.1)):
    """torchvision's RandomResizedCrop.get_params: 10 tries, log-uniform ratio, centre fallback."""
    area = h * w
    for _ in range(10):
        target = area * random.uniform(*scale)
        ar = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return random.randint(0, h - ch), random.randint(0, w - cw), ch, cw
    return 0, 0, h, w


def augment(x):
    """uint8 [B,3,32,32] -> flipped, resized-cropped, normalized float [B,3,32,32]."""
    out = torch.empty(x.shape, dtype=torch.float32)
    for i in range(x.shape[0]):
        img = x[i]
        if random.random() < 0.5:
            img = img.flip(-1)
        t, l, h, w = crop_params()
        if TF is not None:
            img = TF.resized_crop(img, t, l, h, w, [32, 32], antialias=True).float()
        else:
            img = F.interpolate(img[None, :, t:t + h, l:l + w].float(), size=(32, 32), mode="bilinear",
                                align_corners=False)[0].round().clamp(0, 255)
        out[i] = img
    return (out / 255 - MEAN) / STD


def prep(x):
    return ((x.float() / 255 - MEAN) / STD).to(dev).contiguous(memory_format=fmt)


def accuracy(model, x, y):
    model.eval()
    ok = 0
    with torch.no_grad():
        for i in range(0, len(x), 256):
            ok += (model(prep(x[i:i + 256])).argmax(1).cpu() == y[i:i + 256]).sum().item()
    return ok / len(x)


model = ResNet().to(dev).to(memory_format=fmt)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(m) for m in a.milestones.split(",")], 0.1)
os.makedirs(a.out, exist_ok=True)
csv = open(os.path.join(a.out, "metrics.csv"), "w")
csv.write("epoch,lr,train_loss,train_acc,val_acc,seconds,img_per_s\n")
best, best_state, gen = -1.0, None, torch.Generator().manual_seed(a.seed)
steps = len(train_idx) // a.batch_size
for epoch in range(a.epochs):
    model.train()
    lr, t0, loss_sum, ok, seen = opt.param_groups[0]["lr"], time.perf_counter(), 0.0, 0, 0
    order = train_idx[torch.randperm(len(train_idx), generator=gen)]
    for s in range(steps if not a.max_steps else min(steps, a.max_steps)):
        idx = order[s * a.batch_size:(s + 1) * a.batch_size]
        x = augment(xtr[idx]).to(dev).contiguous(memory_format=fmt)
        y = ytr[idx].to(dev)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        ok += (out.argmax(1) == y).sum().item()
        seen += len(y)
    sched.step()
    secs = time.perf_counter() - t0
    val = ""
    if (epoch + 1) % a.val_every == 0 or epoch + 1 == a.epochs:
        v = accuracy(model, xtr[val_idx], ytr[val_idx])
        val = f"{v:.6f}"
        if v > best:
            best, best_state = v, {k: t.detach().clone() for k, t in model.state_dict().items()}
    csv.write(f"{epoch + 1},{lr:.6g},{loss_sum / seen:.6f},{ok / seen:.6f},{val},{secs:.3f},{seen / secs:.1f}\n")
    csv.flush()
    print(f"epoch {epoch + 1}/{a.epochs}  lr {lr:g}  train_loss {loss_sum / seen:.4f}  train_acc {ok / seen:.4f}"
          f"{'  val_acc ' + val if val else ''}  {secs:.1f}s  {seen / secs:.0f} img/s", flush=True)
model.load_state_dict(best_state)
res = {"test": accuracy(model, xte, yte), "val": accuracy(model, xtr[val_idx], ytr[val_idx])}
json.dump(res, open(os.path.join(a.out, "results.json"), "w"))
print(f"best weights: val {res['val']:.4f}  test {res['test']:.4f}")
