#!/usr/bin/env python3
"""The practical's networks in PyTorch, as convnet.c defines them: the same layers, the same
initialization and the same state_dict names and shapes, so a checkpoint written by apps/
loads into them strictly and back. A checkpoint's tensor name is "model." + the state_dict key
(the notebook's Lightning module holds the net as self.model).

  ResNet(block="preact")    pre-activation ResNet [2,2,3] x [16,24,32], 83,882 parameters
  ResNet(block="original")  the original ResNet block
  mlp()                     Part 3's MLP 3072-512-256-10 with ReLU

  python3 tools/convnet_torch.py keys preact|original|mlp    parameter count and checkpoint names
  python3 tools/convnet_torch.py check FILE preact|original|mlp
      loads FILE (safetensors, as apps/ write it) strictly; prints one line, exit 0 when it loads

Used by tests/torch_golden.py (the parity test's golden data), bench/torch_baseline.py,
bench/torch_practical.py and bench/torch_layers.py. Needs torch (and numpy for `check`).
"""
import json, struct, sys
import torch
from torch import nn


def conv3x3(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x); a downsampling block's conv1
    has stride 2 and its shortcut is conv1x1/2(relu(bn(x))), any other's is x."""

    def __init__(self, c_in, c_out, subsample):
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), conv3x3(c_in, c_out, 2 if subsample else 1),
                                 nn.BatchNorm2d(c_out), nn.ReLU(), conv3x3(c_out, c_out))
        self.downsample = (nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, stride=2, bias=False))
                           if subsample else None)

    def forward(self, x):
        return self.net(x) + (x if self.downsample is None else self.downsample(x))


class OriginalBlock(nn.Module):
    """out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); a downsampling block's conv1
    has stride 2 and its shortcut is a 1x1 stride-2 convolution with a bias."""

    def __init__(self, c_in, c_out, subsample):
        super().__init__()
        self.net = nn.Sequential(conv3x3(c_in, c_out, 2 if subsample else 1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 conv3x3(c_out, c_out), nn.BatchNorm2d(c_out))
        self.downsample = nn.Conv2d(c_in, c_out, 1, stride=2) if subsample else None
        self.act_fn = nn.ReLU()

    def forward(self, x):
        return self.act_fn(self.net(x) + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """stem (conv3x3 3 -> c[0]; the original block's stem adds batchnorm and ReLU), stages of
    blocks (the first block of every stage after the first halves the image), then global
    average pooling and a linear classifier."""

    def __init__(self, num_classes=10, num_blocks=(2, 2, 3), c_hidden=(16, 24, 32), block="preact"):
        super().__init__()
        if block not in ("preact", "original"):
            raise ValueError(f"block: preact or original, not {block!r}")
        Block = PreActBlock if block == "preact" else OriginalBlock
        stem = [conv3x3(3, c_hidden[0])]
        if block == "original":
            stem += [nn.BatchNorm2d(c_hidden[0]), nn.ReLU()]
        self.input_net = nn.Sequential(*stem)
        blocks = []
        for stage, count in enumerate(num_blocks):
            for i in range(count):
                subsample = i == 0 and stage > 0
                blocks.append(Block(c_hidden[stage - 1 if subsample else stage], c_hidden[stage], subsample))
        self.blocks = nn.Sequential(*blocks)
        self.output_net = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(c_hidden[-1], num_classes))
        # convolutions: kaiming normal (fan_out, ReLU gain); batchnorm: weight 1, bias 0;
        # linear layers keep PyTorch's default
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.output_net(self.blocks(self.input_net(x)))


def mlp(widths=(3072, 512, 256, 10)):
    """flatten, then linear layers with ReLU between them (keys 1.*, 3.*, 5.*)"""
    layers = [nn.Flatten()]
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def network(kind):
    return mlp() if kind == "mlp" else ResNet(block=kind)


def read_safetensors(path):
    """{name: tensor} of a safetensors file (F32 and I64 tensors)"""
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[t["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(data[8 + n + a:8 + n + b], dtype=dtype).reshape(t["shape"]).copy())
    return out


def load_checkpoint(net, path):
    """a checkpoint written by apps/ into net, strictly (every name and shape must match)"""
    sd = read_safetensors(path)
    bad = [k for k in sd if not k.startswith("model.")]
    if bad:
        raise KeyError(f"{path}: tensors without the 'model.' prefix: {bad[:3]}")
    net.load_state_dict({k[len("model."):]: v for k, v in sd.items()}, strict=True)
    return net


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keys":
        net = network(sys.argv[2])
        print(sum(p.numel() for p in net.parameters()))
        for k, v in net.state_dict().items():
            print("model." + k, tuple(v.shape), v.dtype)
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        path, kind = sys.argv[2], sys.argv[3]
        net = load_checkpoint(network(kind), path)
        print(f"{path}: loaded strictly into tools/convnet_torch.py's {kind} network "
              f"({len(net.state_dict())} tensors, {sum(p.numel() for p in net.parameters())} parameters)")
    else:
        print(__doc__)
        sys.exit(2)
