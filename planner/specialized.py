"""Specialized models: NoScope's family of tiny CNNs, trained per video and per predicate.

An architecture is ``blocks`` blocks of two 3×3 convolutions and a 2×2 max-pool, with F, 2F, 4F
filters, on ``size``×``size`` frames from which the mean training frame is subtracted, then a
*head* that makes one logit of the feature map:

- ``"dense"`` (NoScope's): the map flattened, one dense layer of ``dense`` units, a logit. Its
  weights are tied to positions in the frame, so an object where the training frames had none
  is not recognised;
- ``"pool"``: a 3×3 convolution to ``dense`` channels at every position, their maximum and their
  mean over all positions ("is it anywhere", "how much of it is there"), a logit of those. The
  same weights serve every position.

On the composed hour (objects 8-12 pixels tall at 64×64, walkers sometimes where the training
frames had nobody), the pooled head trained on 1,800 frames scored 89% of 6,257 held-out frames
below every one of their 636 positives; the dense one, 0.1% below all but 2 of them and 88.9%
below all but 5 (``benchmarks/stages.py``). On 900 frames (200 steps, 2 cores) the pooled one
trained in 18-21 s in float32 and 8-11 s in bfloat16; the larger candidates take up to a minute.

The feature layers compute in the architecture's ``precision`` (PRECISIONS): the planner picks
bfloat16 where the CPU has it (``default_precision``), and a model is always scored in the
precision it was trained in, which the stored plan keeps.

>>> arch = Architecture(blocks=2, filters=16, dense=32, size=64, head="pool")
>>> net = SpecializedCNN(arch)
>>> net(torch.zeros(4, 3, 64, 64)).shape, arch.name
(torch.Size([4]), 'cnn2x16-p32@64')
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vql.engine.views import Crop, View, crop_text
from vql.errors import PlanError

# the pooled CNN's input sizes: the planner picks one from the objects' size on the training
# frames (``planner/cascade.py: pool_size``); the first is the default
POOL_SIZES = (64, 96, 128)
CANDIDATES = (
    # (blocks, filters, dense, size, head): the planner trains the first ``planner/cascade.py:
    # TRAINED`` (the cheapest, and the pooled one at the size it picks of POOL_SIZES), the rest
    # by cost (``benchmarks/stages.py``)
    (1, 16, 32, 32, "dense"),
    (2, 16, 32, POOL_SIZES[0], "pool"),
    (2, 16, 32, 64, "dense"),
    (2, 32, 64, 64, "dense"),
    (3, 32, 128, 64, "dense"),
    *((2, 16, 32, size, "pool") for size in POOL_SIZES[1:]),
)
HEADS = ("dense", "pool")
# the precision the feature layers compute in, training and scoring alike (the convolutions, the
# pooled head's convolution and pooling; the last linear layer or two stay float32), and the
# suffix of the model's name. On an AMD EPYC with AVX512-BF16 the pooled CNN trained 2.1x and
# scored 2.3x faster in bfloat16 on the composed hour (benchmarks/stages.py --precisions), and as
# it separated as well; on a CPU without bfloat16 instructions it is emulated, and slower
PRECISIONS = {"float32": nullcontext, "bfloat16": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}
SUFFIX = {"float32": "", "bfloat16": "-bf16"}
assert SUFFIX.keys() == PRECISIONS.keys()
MIN_STEPS = 200  # training steps at least (``train``): more over-fit few frames (benchmarks/stages.py)


@dataclass(frozen=True, slots=True)
class Architecture:
    blocks: int
    filters: int
    dense: int
    size: int
    head: str = "dense"  # HEADS
    precision: str = "float32"  # PRECISIONS: a model is scored in the precision it was trained in

    @property
    def name(self) -> str:
        return f"cnn{self.blocks}x{self.filters}-{self.head[0]}{self.dense}@{self.size}{SUFFIX.get(self.precision, '')}"

    @property
    def shape(self) -> tuple:
        """As CANDIDATES lists it."""
        return self.blocks, self.filters, self.dense, self.size, self.head


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), as torch reports it
    (False with a torch too old to say)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def default_precision() -> str:
    """The precision the planner trains its CNNs in: ``VQL_CNN_PRECISION`` where set (one of
    PRECISIONS), else bfloat16 where ``native_bfloat16()``, float32 elsewhere. It applies to
    plans made from now on: a stored plan keeps each model's precision and is always scored in it
    (in workers, on Ray, in a later session), as its thresholds were placed and certified."""
    chosen = os.environ.get("VQL_CNN_PRECISION", "").strip()
    if chosen:
        if chosen not in PRECISIONS:
            raise PlanError(f"VQL_CNN_PRECISION={chosen!r} is not a precision: one of {', '.join(PRECISIONS)}")
        return chosen
    return "bfloat16" if native_bfloat16() else "float32"


class SpecializedCNN(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        if arch.head not in HEADS:
            raise ValueError(f"unknown head {arch.head!r}: one of {HEADS}")
        if arch.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {arch.precision!r}: one of {', '.join(PRECISIONS)}")
        layers: list[nn.Module] = []
        channels = 3
        for b in range(arch.blocks):
            width = arch.filters * (2 ** b)
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        side = arch.size // (2 ** arch.blocks)
        if arch.head == "pool":
            layers += [nn.Conv2d(channels, arch.dense, 3, padding=1), nn.ReLU(inplace=True), _MaxAndMean()]
            self.head = nn.Linear(2 * arch.dense, 1)
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, arch.dense), nn.ReLU(inplace=True),
                                      nn.Linear(arch.dense, 1))
        self.features = nn.Sequential(*layers)
        self.arch = arch
        # channels-last weights: these small nets score 1.5-2.9x faster on CPU (in batches of 64,
        # no slower than 256 here) and train 1.04-1.9x faster over two runs, scores equal to 1e-7
        # (benchmarks/cnn_layout.py)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with PRECISIONS[self.arch.precision]():
            h = self.features(x)
        return self.head(h.float()).squeeze(1)


class _MaxAndMean(nn.Module):
    """[N, C, H, W] -> [N, 2C]: each channel's maximum and mean over all positions."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], 1)


@dataclass
class TrainedModel:
    arch: Architecture
    net: SpecializedCNN
    mean: np.ndarray  # [size, size, 3] float32, the mean training frame
    train_seconds: float
    crop: Crop | None = None  # the part of the frame it reads (a region predicate's region)

    @property
    def name(self) -> str:
        return self.arch.name + crop_text(self.crop)

    @property
    def size(self) -> int:
        """The frame size the model reads."""
        return self.arch.size

    @property
    def view(self) -> View:
        return self.arch.size, self.crop

    def to_tensor(self, small: np.ndarray) -> torch.Tensor:
        """[N, size, size, 3] uint8 -> the nets' input: [N, 3, size, size] in channels-last memory
        (the frames' own order, so no copy; NCHW-contiguous input gives the same scores, bit for
        bit, and scored as fast, 0.97-1.01x: benchmarks/cnn_layout.py)."""
        x = torch.from_numpy(small.astype(np.float32) - self.mean).permute(0, 3, 1, 2) / 64.0
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def scores(self, small: np.ndarray, batch: int = 64) -> np.ndarray:
        """P(predicate true) for [N, size, size, 3] uint8 frames."""
        self.net.eval()
        out = [torch.sigmoid(self.net(self.to_tensor(small[i:i + batch]))).numpy() for i in range(0, len(small), batch)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def train(arch: Architecture, small: np.ndarray, labels: np.ndarray, min_steps: int = MIN_STEPS, min_epochs: int = 12,
          max_steps: int = 1500, seed: int = 0, crop: Crop | None = None) -> TrainedModel:
    """Train on [N, size, size, 3] uint8 frames (cut to ``crop``) with boolean labels (class-balanced loss) for a
    fixed number of steps of 64 frames: ``min_epochs`` epochs, at least ``min_steps`` and at most
    ``max_steps`` steps. The budget is counted in steps, not seconds, so the same frames give
    the same model however loaded the machine is."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    mean = small.astype(np.float32).mean(axis=0)
    model = TrainedModel(arch, SpecializedCNN(arch), mean, 0.0, crop)
    x_all = model.to_tensor(small)
    y_all = torch.from_numpy(np.asarray(labels, np.float32))
    positives = float(y_all.sum())
    pos_weight = torch.tensor((len(y_all) - positives) / max(1.0, positives))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight.clamp(0.1, 10.0))
    opt = torch.optim.Adam(model.net.parameters(), lr=2e-3)
    model.net.train()
    per_epoch = -(-len(y_all) // 64)
    steps = min(max_steps, max(min_steps, min_epochs * per_epoch))
    for epoch in range(-(-steps // max(1, per_epoch))):
        order = rng.permutation(len(y_all))
        for i in range(0, min(len(order), (steps - epoch * per_epoch) * 64), 64):
            idx = torch.from_numpy(order[i:i + 64])
            x = x_all[idx]
            opt.zero_grad()
            loss = loss_fn(model.net(x), y_all[idx])
            loss.backward()
            opt.step()
    model.net.eval()
    model.train_seconds = time.perf_counter() - start
    return model
