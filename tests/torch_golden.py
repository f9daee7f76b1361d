#!/usr/bin/env python3
"""PyTorch ground truth for the parity tests (needs torch; not run by CI).

  python3 tests/torch_golden.py write        # writes tests/data/golden_{preact,original}.*
  python3 tests/torch_golden.py verify FILE.safetensors [--data DIR] [--block preact]
      loads a checkpoint written by convnet.c into the PyTorch model (strict) and
      prints its accuracy on the CIFAR-10 test set.

For each block type, `write` produces
  golden_<block>.safetensors : the PyTorch model's state_dict (model. prefix), with BN
                               weights/biases/running stats randomized so they matter
  golden_<block>.bin         : named float32 arrays: input x [4,3,32,32], labels, logits,
                               loss, grad.<param> for every parameter, buffer.<name> (BN
                               running stats after the training-mode forward), and
                               after.<param> (weights after one SGD step: lr 0.1,
                               momentum 0.9, weight decay 1e-4).
Format of .bin: b"CNVGOLD1", then records of u32 name length, name, u32 count, count f32.
"""
import json, os, struct, sys
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from convnet_torch import ResNet, read_safetensors as load_safetensors  # noqa: E402  (the project's own definition)


def save_safetensors(path, sd):
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        arr = v.detach().cpu().numpy()
        dtype = {np.float32: "F32", np.int64: "I64"}[arr.dtype.type]
        b = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[k] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write(block):
    torch.manual_seed(0)
    model = ResNet(block=block)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
                m.running_mean.uniform_(-0.1, 0.1, generator=g)
                m.running_var.uniform_(0.8, 1.2, generator=g)
    sd = {"model." + k: v.clone() for k, v in model.state_dict().items()}
    save_safetensors(os.path.join(HERE, "data", f"golden_{block}.safetensors"), sd)
    x = torch.randn(4, 3, 32, 32, generator=g)
    y = torch.tensor([3, 0, 9, 3])
    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    recs = [("x", x), ("labels", y.float()), ("logits", logits), ("loss", loss.reshape(1))]
    for k, p in model.named_parameters():
        recs.append(("grad.model." + k, p.grad))
    for k, v in model.state_dict().items():
        if "running" in k:
            recs.append(("buffer.model." + k, v))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt.step()
    for k, p in model.named_parameters():
        recs.append(("after.model." + k, p))
    with open(os.path.join(HERE, "data", f"golden_{block}.bin"), "wb") as f:
        f.write(b"CNVGOLD1")
        for name, t in recs:
            a = t.detach().float().contiguous().numpy().astype("<f4").ravel()
            f.write(struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", a.size) + a.tobytes())
    print(f"{block}: loss {loss.item():.6f}, {len(recs)} arrays")


def verify(path, data_dir, block):
    model = ResNet(block=block)
    sd = load_safetensors(path)
    model.load_state_dict({k[len("model."):]: v for k, v in sd.items()}, strict=True)
    model.eval()
    raw = np.fromfile(os.path.join(data_dir, "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    x = (x - mean) / std
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += (model(x[i:i + 500]).argmax(1) == labels[i:i + 500]).sum().item()
    print(f"{path}: loaded strictly into the PyTorch model ({block}, tools/convnet_torch.py); "
          f"test accuracy {correct / len(x):.4f} on {len(x)} images")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "write":
        os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
        write("preact")
        write("original")
    elif len(sys.argv) >= 3 and sys.argv[1] == "verify":
        args = sys.argv[3:]
        d = args[args.index("--data") + 1] if "--data" in args else os.environ.get("CIFAR10_DIR", "data/cifar-10-batches-bin")
        b = args[args.index("--block") + 1] if "--block" in args else "preact"
        verify(sys.argv[2], d, b)
    else:
        print(__doc__)
        sys.exit(2)
