"""Train image, text and segmentation models on synthetic data.

This script started as a ResNet baseline and grew to cover a small ViT, a
recurrent text classifier and a U-Net. Every dataset is generated from random
tensors, so nothing is downloaded and the samples are reproducible from the seed.

Typical use:

    python long_train.py --model resnet18 --epochs 30 --lr 0.1 --optimizer sgd
    python long_train.py --model vit_tiny --amp --amp-dtype bfloat16 --ema
    python long_train.py --model gru --epochs 10 --lr 3e-3
    python long_train.py --model unet --image-size 64 --num-classes 4
    python long_train.py --model resnet18 --lr-find
    python long_train.py --model resnet18 --optimizer sgd --sweep --sweep-lrs 0.05 0.1 0.2

Metrics go to ``<output_dir>/<run_name>/metrics.jsonl``, one JSON object per
line, and checkpoints to ``last.pt`` and ``best.pt`` in the same folder.
"""

import argparse
import copy
import dataclasses
import itertools
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

logger = logging.getLogger("train")

IMAGE_MODELS = ("resnet18", "resnet50", "vit_tiny")
TEXT_MODELS = ("gru", "lstm")
SEGMENTATION_MODELS = ("unet",)
ALL_MODELS = IMAGE_MODELS + TEXT_MODELS + SEGMENTATION_MODELS

# Token ids reserved by the synthetic text datasets.
PAD_TOKEN = 0
MASK_TOKEN = 1
FIRST_WORD_TOKEN = 2

# Rough channel statistics of the synthetic images with the default noise
# settings, estimated from how they are generated rather than measured.
# Normalisation only needs them to be close.
IMAGE_MEAN = (0.0, 0.0, 0.0)
IMAGE_STD = (1.1, 1.1, 1.1)


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Settings of one training run, filled from an optional JSON file and the command line."""

    # Run and output
    output_dir: str = field(default="runs", metadata={"help": "folder that receives one subfolder per run"})
    run_name: str = field(default="", metadata={"help": "name of the run subfolder; empty means model name and time"})
    seed: int = field(default=0, metadata={"help": "seed for torch, numpy and random"})
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu', 'cuda' or 'cuda:N'"})
    deterministic: bool = field(default=False, metadata={"help": "use deterministic cuDNN kernels (slower)"})

    # Model
    model: str = field(default="resnet18", metadata={"help": "one of: " + ", ".join(ALL_MODELS)})
    num_classes: int = field(default=10, metadata={"help": "number of classes (segmentation counts background)"})
    in_channels: int = field(default=3, metadata={"help": "number of image channels"})
    image_size: int = field(default=32, metadata={"help": "height and width of the images in pixels"})
    patch_size: int = field(default=4, metadata={"help": "ViT patch size in pixels"})
    vit_dim: int = field(default=192, metadata={"help": "ViT embedding dimension"})
    vit_depth: int = field(default=6, metadata={"help": "number of ViT blocks"})
    vit_heads: int = field(default=3, metadata={"help": "number of ViT attention heads"})
    mlp_ratio: float = field(default=4.0, metadata={"help": "ViT MLP hidden size as a multiple of the embedding size"})
    dropout: float = field(default=0.0, metadata={"help": "dropout probability in the classifier heads"})
    drop_path: float = field(default=0.0, metadata={"help": "maximum stochastic depth rate, reached by the last block"})
    vocab_size: int = field(default=2000, metadata={"help": "size of the synthetic text vocabulary"})
    min_seq_len: int = field(default=16, metadata={"help": "minimum length of a synthetic text sequence"})
    max_seq_len: int = field(default=96, metadata={"help": "maximum length of a synthetic text sequence"})
    embed_dim: int = field(default=128, metadata={"help": "token embedding dimension of the text models"})
    hidden_dim: int = field(default=256, metadata={"help": "hidden size of the recurrent layers"})
    rnn_layers: int = field(default=2, metadata={"help": "number of stacked recurrent layers"})
    unet_channels: int = field(default=32, metadata={"help": "channels of the first U-Net stage, doubled per stage"})
    unet_depth: int = field(default=3, metadata={"help": "number of U-Net downsampling stages"})

    # Data
    train_size: int = field(default=20000, metadata={"help": "number of synthetic training samples"})
    val_size: int = field(default=2000, metadata={"help": "number of synthetic validation samples"})
    class_imbalance: float = field(
        default=1.0, metadata={"help": "ratio of the most to the least frequent class in the training set"}
    )
    noise_std: float = field(default=0.8, metadata={"help": "standard deviation of the noise added to images"})
    balanced_sampler: bool = field(default=False, metadata={"help": "sample training classes with equal probability"})
    batch_size: int = field(default=128, metadata={"help": "batch size per optimizer micro-step"})
    num_workers: int = field(default=2, metadata={"help": "number of DataLoader worker processes"})
    augment: bool = field(default=True, metadata={"help": "apply training augmentations"})
    mixup_alpha: float = field(default=0.0, metadata={"help": "Beta(alpha, alpha) for mixup; 0 disables it"})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "Beta(alpha, alpha) for CutMix; 0 disables it"})
    mix_prob: float = field(default=1.0, metadata={"help": "probability that a batch gets mixup or CutMix"})
    token_mask_prob: float = field(default=0.1, metadata={"help": "probability of masking a token in training text"})

    # Optimisation
    epochs: int = field(default=30, metadata={"help": "number of training epochs"})
    optimizer: str = field(default="adamw", metadata={"help": "'adamw' or 'sgd'"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate after warm-up"})
    min_lr: float = field(default=1e-6, metadata={"help": "learning rate at the end of the cosine decay"})
    weight_decay: float = field(default=0.05, metadata={"help": "decoupled weight decay for AdamW, L2 for SGD"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    nesterov: bool = field(default=True, metadata={"help": "use Nesterov momentum with SGD"})
    scheduler: str = field(
        default="manual", metadata={"help": "'manual' (warm-up + cosine by hand), 'cosine' or 'onecycle'"}
    )
    warmup_epochs: float = field(default=2.0, metadata={"help": "length of the linear warm-up in epochs"})
    grad_clip: float = field(default=1.0, metadata={"help": "maximum gradient L2 norm; 0 disables clipping"})
    accum_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing for the cross-entropy loss"})
    amp: bool = field(default=False, metadata={"help": "run the forward pass under torch.amp.autocast"})
    amp_dtype: str = field(default="float16", metadata={"help": "'float16' or 'bfloat16' for autocast"})
    ema: bool = field(default=False, metadata={"help": "keep an exponential moving average of the weights"})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay per optimizer step"})
    ema_warmup_steps: int = field(
        default=100, metadata={"help": "time constant of the EMA decay ramp-up, in optimizer steps"}
    )

    # Checkpoints, evaluation and stopping
    resume: str = field(default="", metadata={"help": "checkpoint to resume from; 'auto' picks last.pt of the run"})
    save_every: int = field(default=1, metadata={"help": "save last.pt every N epochs"})
    eval_every: int = field(default=1, metadata={"help": "evaluate every N epochs"})
    patience: int = field(default=10, metadata={"help": "evaluations without improvement before stopping; 0 disables"})
    min_delta: float = field(default=1e-4, metadata={"help": "minimum change of the metric that counts as improvement"})
    log_interval: int = field(default=50, metadata={"help": "log training metrics every N micro-batches"})

    # Learning-rate finder
    lr_find: bool = field(default=False, metadata={"help": "run the learning-rate range test instead of training"})
    lr_find_start: float = field(default=1e-7, metadata={"help": "first learning rate of the range test"})
    lr_find_end: float = field(default=1.0, metadata={"help": "last learning rate of the range test"})
    lr_find_steps: int = field(default=200, metadata={"help": "number of optimizer steps in the range test"})

    # Hyper-parameter sweep
    sweep: bool = field(default=False, metadata={"help": "train once per combination of the sweep values"})
    sweep_lrs: List[float] = field(default_factory=lambda: [3e-4, 1e-3, 3e-3], metadata={"help": "learning rates"})
    sweep_weight_decays: List[float] = field(
        default_factory=lambda: [0.0, 0.05], metadata={"help": "weight decay values"}
    )
    sweep_epochs: int = field(default=5, metadata={"help": "epochs per sweep trial"})

    @property
    def task(self) -> str:
        """Task family of the selected model: 'image', 'text' or 'segmentation'."""
        if self.model in IMAGE_MODELS:
            return "image"
        if self.model in TEXT_MODELS:
            return "text"
        return "segmentation"

    @property
    def run_dir(self) -> str:
        """Folder of this run's logs and checkpoints."""
        return os.path.join(self.output_dir, self.run_name)


def build_arg_parser() -> argparse.ArgumentParser:
    """Build a parser with one option per TrainConfig field, plus --config."""
    parser = argparse.ArgumentParser(description="Train a model on synthetic data.")
    parser.add_argument(
        "--config", default="", help="JSON file of TrainConfig fields; options on the command line override it"
    )

    defaults = TrainConfig()
    for config_field in dataclasses.fields(TrainConfig):
        name = config_field.name
        default = getattr(defaults, name)
        help_text = config_field.metadata.get("help", "")
        flag = "--" + name.replace("_", "-")

        # Every option defaults to SUPPRESS so that parse_config can tell which
        # ones the user actually gave and let them override the JSON file.
        options: Dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        options["help"] = f"{help_text} (default: {default!r})"
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            options["type"] = type(default[0]) if default else str
            options["nargs"] = "+"
        else:
            options["type"] = type(default)
        parser.add_argument(flag, **options)
    return parser


def load_config_file(path: str) -> Dict[str, Any]:
    """Read a JSON object of TrainConfig fields and reject unknown keys."""
    with open(path, "r", encoding="utf-8") as handle:
        values = json.load(handle)
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must contain a JSON object, got {type(values).__name__}")

    known = {config_field.name for config_field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config file {path} has unknown fields: {', '.join(unknown)}")
    return values


def validate_config(cfg: TrainConfig) -> None:
    """Raise ValueError for settings that cannot work together."""
    if cfg.model not in ALL_MODELS:
        raise ValueError(f"invalid --model {cfg.model!r}; expected one of {', '.join(ALL_MODELS)}")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"invalid --optimizer {cfg.optimizer!r}; expected 'adamw' or 'sgd'")
    if cfg.scheduler not in ("manual", "cosine", "onecycle"):
        raise ValueError(f"invalid --scheduler {cfg.scheduler!r}; expected 'manual', 'cosine' or 'onecycle'")
    if cfg.amp_dtype not in ("float16", "bfloat16"):
        raise ValueError(f"invalid --amp-dtype {cfg.amp_dtype!r}; expected 'float16' or 'bfloat16'")
    if cfg.num_classes < 2:
        raise ValueError(f"--num-classes must be at least 2, got {cfg.num_classes}")
    if cfg.batch_size < 1 or cfg.accum_steps < 1:
        raise ValueError("--batch-size and --accum-steps must be at least 1")
    if cfg.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {cfg.epochs}")
    if not 0.0 < cfg.lr < 10.0:
        raise ValueError(f"--lr must be in (0, 10), got {cfg.lr}")
    if cfg.min_lr < 0.0 or cfg.min_lr > cfg.lr:
        raise ValueError(f"--min-lr must be in [0, lr], got {cfg.min_lr} with lr {cfg.lr}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if not 0.0 < cfg.ema_decay < 1.0:
        raise ValueError(f"--ema-decay must be in (0, 1), got {cfg.ema_decay}")
    if cfg.class_imbalance < 1.0:
        raise ValueError(f"--class-imbalance must be at least 1, got {cfg.class_imbalance}")

    if cfg.model.startswith("vit"):
        if cfg.image_size % cfg.patch_size != 0:
            raise ValueError(f"--image-size {cfg.image_size} is not divisible by --patch-size {cfg.patch_size}")
        if cfg.vit_dim % cfg.vit_heads != 0:
            raise ValueError(f"--vit-dim {cfg.vit_dim} is not divisible by --vit-heads {cfg.vit_heads}")
    if cfg.model == "unet" and cfg.image_size % (2 ** cfg.unet_depth) != 0:
        raise ValueError(f"--image-size {cfg.image_size} must be divisible by 2**unet_depth = {2 ** cfg.unet_depth}")
    if cfg.task == "text":
        if not 1 <= cfg.min_seq_len <= cfg.max_seq_len:
            raise ValueError(
                f"sequence lengths must satisfy 1 <= min ({cfg.min_seq_len}) <= max ({cfg.max_seq_len})"
            )
        if cfg.vocab_size <= FIRST_WORD_TOKEN + cfg.num_classes * SyntheticTextDataset.keywords_per_class:
            raise ValueError(f"--vocab-size {cfg.vocab_size} is too small for {cfg.num_classes} classes")
    if (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0) and cfg.task != "image":
        raise ValueError("mixup and CutMix only apply to image classification models")
    if cfg.lr_find and cfg.sweep:
        raise ValueError("--lr-find and --sweep cannot be used together")
    if cfg.lr_find and not 0.0 < cfg.lr_find_start < cfg.lr_find_end:
        raise ValueError("--lr-find-start must be positive and below --lr-find-end")


def parse_config(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Build a TrainConfig from defaults, an optional JSON file and the command line, in that order."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    values: Dict[str, Any] = {}
    if args.config:
        values.update(load_config_file(args.config))

    command_line = vars(args)
    command_line.pop("config")
    values.update(command_line)

    cfg = TrainConfig(**values)
    if not cfg.run_name:
        cfg.run_name = f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    validate_config(cfg)
    return cfg


# ---------------------------------------------------------------------------
# Utilities
# ---------------------------------------------------------------------------


def setup_logging(run_dir: str) -> None:
    """Log to the console and to ``train.log`` in the run folder."""
    os.makedirs(run_dir, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)

    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    root.addHandler(console)

    log_file = logging.FileHandler(os.path.join(run_dir, "train.log"), encoding="utf-8")
    log_file.setFormatter(formatter)
    root.addHandler(log_file)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch, and optionally select deterministic cuDNN kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and random in a DataLoader worker from the seed torch gave it."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed + worker_id)
    random.seed(worker_seed + worker_id)


def resolve_device(name: str) -> torch.device:
    """Turn the --device option into a torch.device, preferring CUDA for 'auto'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} was requested but CUDA is not available")
    return device


def count_parameters(model: nn.Module) -> Tuple[int, int]:
    """Return the total and the trainable number of parameters."""
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return total, trainable


class AverageMeter:
    """Running sum, count and mean of a scalar such as the loss."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.value = 0.0
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        """Add ``value`` measured over ``n`` samples."""
        self.value = value
        self.total += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.total / max(self.count, 1)

    def __str__(self) -> str:
        return f"{self.name} {self.value:.4f} ({self.avg:.4f})"


class JsonlLogger:
    """Append-only JSON-lines file of metrics, one object per call to ``log``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")

    def log(self, record: Dict[str, Any]) -> None:
        record = dict(record)
        record.setdefault("time", time.time())
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> "JsonlLogger":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Weight initialisation
# ---------------------------------------------------------------------------


def init_conv_network(model: nn.Module, zero_init_residual: bool = True) -> None:
    """Initialise convolutions with Kaiming-normal weights and norms to identity.

    With ``zero_init_residual`` the last norm of each residual branch starts at
    zero, so every residual block begins as the identity mapping.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)

    if zero_init_residual:
        for module in model.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)


def init_transformer(model: nn.Module) -> None:
    """Initialise linear layers with truncated normal (std 0.02) and LayerNorm to identity."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            # The patch embedding is a linear map on flattened patches.
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def init_recurrent(model: nn.Module) -> None:
    """Initialise recurrent weights and set the LSTM forget-gate bias to 1.

    Input-to-hidden matrices get Xavier-uniform weights. Hidden-to-hidden
    matrices get orthogonal ones, which preserve the norm of the hidden state
    under the linear part of each step at initialisation.
    """
    for module in model.modules():
        if isinstance(module, (nn.GRU, nn.LSTM)):
            for name, parameter in module.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(parameter)
                elif name.startswith("weight_hh"):
                    # The gates are stacked along dim 0, so each gate block gets
                    # its own orthogonal matrix.
                    for gate in parameter.chunk(parameter.size(0) // module.hidden_size, dim=0):
                        nn.init.orthogonal_(gate)
                elif name.startswith("bias"):
                    nn.init.zeros_(parameter)
                    if isinstance(module, nn.LSTM) and name.startswith("bias_ih"):
                        # PyTorch orders the LSTM gates input, forget, cell, output.
                        # Only bias_ih gets the 1, because bias_hh is added to it.
                        hidden = module.hidden_size
                        with torch.no_grad():
                            parameter[hidden : 2 * hidden].fill_(1.0)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample during training.

    Kept samples are scaled by ``1 / (1 - p)`` so the expected output is unchanged.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep_prob)
        return x * mask / keep_prob


def drop_path_rates(max_rate: float, num_blocks: int) -> List[float]:
    """Return stochastic depth rates rising linearly from 0 to ``max_rate`` over the blocks."""
    if num_blocks <= 1:
        return [max_rate] * num_blocks
    return [max_rate * index / (num_blocks - 1) for index in range(num_blocks)]


# ---------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop_path = DropPath(drop_path)

        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes * self.expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes * self.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out = self.drop_path(out) + self.shortcut(x)
        return F.relu(out, inplace=True)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand, with a residual connection (ResNet-50).

    The stride sits on the 3x3 convolution, as in torchvision's "ResNet v1.5".
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, drop_path: float = 0.0) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(in_planes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.drop_path = DropPath(drop_path)

        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes * self.expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes * self.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        out = self.drop_path(out) + self.shortcut(x)
        return F.relu(out, inplace=True)


class ResNet(nn.Module):
    """ResNet for small images.

    The stem is a single 3x3 convolution without max pooling, the usual choice
    for 32x32 inputs in place of the 7x7 stride-2 ImageNet stem.
    """

    def __init__(
        self, block: Any, layers: Sequence[int], num_classes: int, in_channels: int, dropout: float, drop_path: float
    ) -> None:
        super().__init__()
        self.in_planes = 64
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )

        rates = drop_path_rates(drop_path, sum(layers))
        stage_planes = (64, 128, 256, 512)
        stages = []
        first_block = 0
        for stage_index, (planes, num_blocks) in enumerate(zip(stage_planes, layers)):
            stride = 1 if stage_index == 0 else 2
            stage_rates = rates[first_block : first_block + num_blocks]
            stages.append(self._make_stage(block, planes, num_blocks, stride, stage_rates))
            first_block += num_blocks
        self.stages = nn.Sequential(*stages)

        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_stage(
        self, block: Any, planes: int, num_blocks: int, stride: int, rates: Sequence[float]
    ) -> nn.Sequential:
        blocks = []
        for index in range(num_blocks):
            block_stride = stride if index == 0 else 1
            blocks.append(block(self.in_planes, planes, block_stride, rates[index]))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stages(x)
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        return self.fc(self.dropout(features))


# ---------------------------------------------------------------------------
# Vision Transformer
# ---------------------------------------------------------------------------


class PatchEmbedding(nn.Module):
    """Split an image into non-overlapping patches and project each to ``dim``."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size * self.grid_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, dim, H/p, W/p) -> (B, num_patches, dim)
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention over ``num_heads`` heads."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]

        attn = (query @ key.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_dropout(attn)

        out = (attn @ value).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_dropout(self.proj(out))


class Mlp(nn.Module):
    """Two linear layers with GELU, the feed-forward part of a transformer block."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.gelu(self.fc1(x)))
        return self.dropout(self.fc2(x))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: attention, then MLP, each residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, attn_dropout=dropout, proj_dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class VisionTransformer(nn.Module):
    """ViT classifier with a learned class token and learned position embeddings."""

    def __init__(
        self, image_size: int, patch_size: int, in_channels: int, num_classes: int, dim: int, depth: int,
        num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, dim)
        num_tokens = self.patch_embed.num_patches + 1

        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        self.pos_dropout = nn.Dropout(dropout)

        rates = drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList(
            [TransformerBlock(dim, num_heads, mlp_ratio, dropout, rates[index]) for index in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

        init_transformer(self)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # A zero head makes the initial predictions uniform, so the first loss is log(num_classes).
        nn.init.zeros_(self.head.weight)

    def no_weight_decay(self) -> List[str]:
        """Names of parameters that must not get weight decay."""
        return ["pos_embed", "cls_token"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls_tokens = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls_tokens, x], dim=1)
        x = self.pos_dropout(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# ---------------------------------------------------------------------------
# Recurrent text classifier
# ---------------------------------------------------------------------------


class RecurrentClassifier(nn.Module):
    """Bidirectional GRU or LSTM over token embeddings, with mean and max pooling.

    Padded positions are excluded from both pools, so the output does not
    depend on how much padding a batch carries.
    """

    def __init__(
        self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, num_classes: int,
        cell: str = "gru", dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_TOKEN)
        rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn_class(
            input_size=embed_dim,
            hidden_size=hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        # Mean and max pooling of both directions: 4 * hidden_dim features.
        self.head = nn.Sequential(
            nn.Linear(4 * hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )
        init_recurrent(self)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(tokens))
        # pack_padded_sequence requires the lengths on the CPU.
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, _ = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=tokens.size(1))

        mask = (tokens != PAD_TOKEN).unsqueeze(-1)
        summed = (outputs * mask).sum(dim=1)
        mean_pool = summed / lengths.to(outputs.dtype).clamp(min=1).unsqueeze(-1)
        max_pool = outputs.masked_fill(~mask, float("-inf")).max(dim=1).values
        features = torch.cat([mean_pool, max_pool], dim=-1)
        return self.head(features)


# ---------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups, which works for the small batches of segmentation."""
    groups = math.gcd(8, channels)
    return nn.GroupNorm(groups, channels)


class DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by GroupNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            group_norm(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            group_norm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DownStage(nn.Module):
    """Halve the resolution with max pooling, then apply a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class UpStage(nn.Module):
    """Double the resolution, concatenate the encoder skip, then apply a DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The sizes match because validate_config requires the image size to
        # be divisible by 2**depth.
        x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Encoder-decoder with skip connections that predicts a class per pixel."""

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 32, depth: int = 3) -> None:
        super().__init__()
        channels = [base_channels * 2**level for level in range(depth + 1)]
        self.inc = DoubleConv(in_channels, channels[0])
        self.down = nn.ModuleList([DownStage(channels[level], channels[level + 1]) for level in range(depth)])
        self.up = nn.ModuleList(
            [UpStage(channels[level + 1], channels[level], channels[level]) for level in reversed(range(depth))]
        )
        self.outc = nn.Conv2d(channels[0], num_classes, kernel_size=1)
        init_conv_network(self, zero_init_residual=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))

        x = skips.pop()
        for stage in self.up:
            x = stage(x, skips.pop())
        return self.outc(x)


# ---------------------------------------------------------------------------
# Model factory
# ---------------------------------------------------------------------------

RESNET_LAYOUTS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


def build_model(cfg: TrainConfig) -> nn.Module:
    """Build the model named by ``cfg.model`` and initialise its weights."""
    if cfg.model in RESNET_LAYOUTS:
        block, layers = RESNET_LAYOUTS[cfg.model]
        model: nn.Module = ResNet(block, layers, cfg.num_classes, cfg.in_channels, cfg.dropout, cfg.drop_path)
        init_conv_network(model, zero_init_residual=True)
    elif cfg.model == "vit_tiny":
        model = VisionTransformer(
            cfg.image_size, cfg.patch_size, cfg.in_channels, cfg.num_classes,
            dim=cfg.vit_dim, depth=cfg.vit_depth, num_heads=cfg.vit_heads,
            mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, drop_path=cfg.drop_path,
        )
    elif cfg.model in TEXT_MODELS:
        model = RecurrentClassifier(
            cfg.vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.rnn_layers, cfg.num_classes,
            cell=cfg.model, dropout=cfg.dropout,
        )
    elif cfg.model == "unet":
        model = UNet(cfg.in_channels, cfg.num_classes, base_channels=cfg.unet_channels, depth=cfg.unet_depth)
    else:
        raise ValueError(f"invalid model name {cfg.model!r}; expected one of {', '.join(ALL_MODELS)}")

    total, trainable = count_parameters(model)
    logger.info("built %s: %.2fM parameters (%.2fM trainable)", cfg.model, total / 1e6, trainable / 1e6)
    return model


# ---------------------------------------------------------------------------
# Synthetic datasets
# ---------------------------------------------------------------------------


def class_frequencies(num_classes: int, imbalance: float) -> torch.Tensor:
    """Return class probabilities that fall geometrically from 1 to 1 / ``imbalance``."""
    exponents = torch.arange(num_classes, dtype=torch.float64) / max(num_classes - 1, 1)
    weights = imbalance ** (-exponents)
    return (weights / weights.sum()).float()


def sample_generator(seed: int, index: int) -> torch.Generator:
    """Return a generator whose state depends only on the dataset seed and the sample index.

    The same sample is then identical in every epoch and every worker process.
    """
    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + index)
    return generator


class SyntheticImageDataset(Dataset):
    """Images made of a smooth per-class pattern, a random shift and Gaussian noise.

    ``pattern_seed`` fixes the class patterns and must be the same for the
    training and validation sets. ``sample_seed`` fixes the labels and noise.
    """

    def __init__(
        self, size: int, num_classes: int, image_size: int, channels: int, noise_std: float, imbalance: float,
        pattern_seed: int, sample_seed: int, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        self.size = size
        self.num_classes = num_classes
        self.image_size = image_size
        self.noise_std = noise_std
        self.sample_seed = sample_seed
        self.transform = transform

        pattern_generator = torch.Generator().manual_seed(pattern_seed)
        coarse = torch.randn(num_classes, channels, 4, 4, generator=pattern_generator)
        self.patterns = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)

        label_generator = torch.Generator().manual_seed(sample_seed)
        probabilities = class_frequencies(num_classes, imbalance)
        self.labels = torch.multinomial(probabilities, size, replacement=True, generator=label_generator)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        generator = sample_generator(self.sample_seed, index)
        label = int(self.labels[index])
        max_shift = self.image_size // 8
        shift_y, shift_x = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
        image = torch.roll(self.patterns[label], shifts=(shift_y, shift_x), dims=(1, 2))
        image = image + self.noise_std * torch.randn(image.shape, generator=generator)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


class SyntheticTextDataset(Dataset):
    """Token sequences in which each class over-represents its own four keywords.

    Token 0 is padding and token 1 the mask token, so words start at 2.
    """

    keywords_per_class = 4

    def __init__(
        self, size: int, num_classes: int, vocab_size: int, min_len: int, max_len: int, keyword_rate: float,
        imbalance: float, sample_seed: int, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        self.size = size
        self.num_classes = num_classes
        self.vocab_size = vocab_size
        self.min_len = min_len
        self.max_len = max_len
        self.keyword_rate = keyword_rate
        self.sample_seed = sample_seed
        self.transform = transform

        label_generator = torch.Generator().manual_seed(sample_seed)
        probabilities = class_frequencies(num_classes, imbalance)
        self.labels = torch.multinomial(probabilities, size, replacement=True, generator=label_generator)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        generator = sample_generator(self.sample_seed, index)
        label = int(self.labels[index])
        length = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=generator))

        tokens = torch.randint(FIRST_WORD_TOKEN, self.vocab_size, (length,), generator=generator)
        keyword_positions = torch.rand(length, generator=generator) < self.keyword_rate
        first_keyword = FIRST_WORD_TOKEN + label * self.keywords_per_class
        keywords = torch.arange(first_keyword, first_keyword + self.keywords_per_class)
        choices = torch.randint(0, len(keywords), (length,), generator=generator)
        tokens = torch.where(keyword_positions, keywords[choices], tokens)

        if self.transform is not None:
            tokens = self.transform(tokens)
        return tokens, label


class SyntheticSegmentationDataset(Dataset):
    """Images of rectangles and discs on a background, with per-pixel class masks.

    Class 0 is the background. Each class has a fixed colour drawn from
    ``pattern_seed``, and each image contains one to four shapes.
    """

    def __init__(
        self, size: int, num_classes: int, image_size: int, channels: int, noise_std: float, pattern_seed: int,
        sample_seed: int, transform: Optional["SegmentationTransform"] = None,
    ) -> None:
        self.size = size
        self.num_classes = num_classes
        self.image_size = image_size
        self.noise_std = noise_std
        self.sample_seed = sample_seed
        self.transform = transform

        pattern_generator = torch.Generator().manual_seed(pattern_seed)
        self.colours = torch.randn(num_classes, channels, generator=pattern_generator)
        self.rows = torch.arange(image_size).view(-1, 1).float()
        self.cols = torch.arange(image_size).view(1, -1).float()

    def __len__(self) -> int:
        return self.size

    def _draw_mask(self, generator: torch.Generator) -> torch.Tensor:
        size = self.image_size
        mask = torch.zeros(size, size, dtype=torch.long)
        num_shapes = int(torch.randint(1, 5, (1,), generator=generator))
        for _ in range(num_shapes):
            label = int(torch.randint(1, self.num_classes, (1,), generator=generator))
            centre_y, centre_x = (torch.rand(2, generator=generator) * size).tolist()
            extent = float(size * (0.1 + 0.2 * torch.rand(1, generator=generator)))
            if torch.rand(1, generator=generator).item() < 0.5:
                inside = ((self.rows - centre_y).abs() < extent) & ((self.cols - centre_x).abs() < extent)
            else:
                inside = (self.rows - centre_y) ** 2 + (self.cols - centre_x) ** 2 < extent**2
            mask[inside] = label
        return mask

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        generator = sample_generator(self.sample_seed, index)
        mask = self._draw_mask(generator)
        # colours[mask] is (H, W, C); images are channels-first.
        image = self.colours[mask].permute(2, 0, 1).contiguous()
        image = image + self.noise_std * torch.randn(image.shape, generator=generator)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask


# ---------------------------------------------------------------------------
# Augmentations on tensors
# ---------------------------------------------------------------------------


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x)
        return x


class RandomCropWithPadding:
    """Zero-pad a (C, H, W) image on every side, then crop back to its size at a random offset."""

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            return image
        _, height, width = image.shape
        padded = F.pad(image, (self.padding,) * 4)
        top = random.randint(0, 2 * self.padding)
        left = random.randint(0, 2 * self.padding)
        return padded[:, top : top + height, left : left + width]


class RandomHorizontalFlip:
    """Mirror a (C, H, W) image left to right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if random.random() < self.p:
            return image.flip(-1)
        return image


class RandomErasing:
    """Fill a random rectangle with zeros (Cutout) with probability ``p``.

    The rectangle covers between ``min_area`` and ``max_area`` of the image,
    with an aspect ratio between 1/3 and 3.
    """

    def __init__(self, p: float = 0.25, min_area: float = 0.02, max_area: float = 0.2) -> None:
        self.p = p
        self.min_area = min_area
        self.max_area = max_area

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if random.random() >= self.p:
            return image
        _, height, width = image.shape
        area = height * width * random.uniform(self.min_area, self.max_area)
        aspect = math.exp(random.uniform(math.log(1 / 3), math.log(3)))
        erase_h = min(height, max(1, int(round(math.sqrt(area * aspect)))))
        erase_w = min(width, max(1, int(round(math.sqrt(area / aspect)))))
        top = random.randint(0, height - erase_h)
        left = random.randint(0, width - erase_w)
        image = image.clone()
        image[:, top : top + erase_h, left : left + erase_w] = 0.0
        return image


class Normalize:
    """Subtract a per-channel mean and divide by a per-channel standard deviation."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        channels = image.shape[0]
        return (image - self.mean[:channels]) / self.std[:channels]


class SegmentationTransform:
    """Flip and crop an image and its mask together, then normalise the image.

    The flip and the crop only run when ``train`` is set. Padded mask pixels
    get class 0, the background.
    """

    def __init__(self, train: bool, padding: int, flip_p: float = 0.5) -> None:
        self.train = train
        self.padding = padding
        self.flip_p = flip_p
        self.normalize = Normalize(IMAGE_MEAN, IMAGE_STD)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.train and random.random() < self.flip_p:
            image = image.flip(-1)
            mask = mask.flip(-1)
        if self.train and self.padding > 0:
            _, height, width = image.shape
            pad = (self.padding,) * 4
            image = F.pad(image, pad)
            mask = F.pad(mask, pad, value=0)
            top = random.randint(0, 2 * self.padding)
            left = random.randint(0, 2 * self.padding)
            image = image[:, top : top + height, left : left + width]
            mask = mask[top : top + height, left : left + width]
        return self.normalize(image), mask


class TokenMasking:
    """Replace each token with the mask token with probability ``p``."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.p <= 0:
            return tokens
        masked = torch.rand(tokens.shape) < self.p
        return tokens.masked_fill(masked, MASK_TOKEN)


def build_image_transform(cfg: TrainConfig, train: bool) -> Compose:
    """Return the image pipeline: augmentations for training (if enabled), then normalisation."""
    transforms: List[Callable[[torch.Tensor], torch.Tensor]] = []
    if train and cfg.augment:
        transforms.append(RandomCropWithPadding(padding=max(1, cfg.image_size // 8)))
        transforms.append(RandomHorizontalFlip(p=0.5))
    transforms.append(Normalize(IMAGE_MEAN, IMAGE_STD))
    if train and cfg.augment:
        # Erasing after normalisation fills with the mean, not with black.
        transforms.append(RandomErasing(p=0.25))
    return Compose(transforms)


class MixupCutmix:
    """Mix each batch with its reversed copy, using mixup or CutMix, and return soft targets.

    When both alphas are positive, each batch picks one of the two with equal
    probability. Label smoothing is applied to the one-hot targets before
    mixing, so the loss must not smooth them again.
    """

    def __init__(
        self, mixup_alpha: float, cutmix_alpha: float, prob: float, num_classes: int, label_smoothing: float
    ) -> None:
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def smooth_one_hot(self, targets: torch.Tensor) -> torch.Tensor:
        off_value = self.label_smoothing / self.num_classes
        on_value = 1.0 - self.label_smoothing + off_value
        one_hot = torch.full((targets.size(0), self.num_classes), off_value, device=targets.device)
        return one_hot.scatter_(1, targets.unsqueeze(1), on_value)

    def _cutmix_box(self, height: int, width: int, lam: float) -> Tuple[int, int, int, int]:
        cut_ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut_ratio), int(width * cut_ratio)
        centre_y, centre_x = np.random.randint(height), np.random.randint(width)
        top, bottom = np.clip(centre_y - cut_h // 2, 0, height), np.clip(centre_y + cut_h // 2, 0, height)
        left, right = np.clip(centre_x - cut_w // 2, 0, width), np.clip(centre_x + cut_w // 2, 0, width)
        return int(top), int(bottom), int(left), int(right)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        soft_targets = self.smooth_one_hot(targets)
        if not self.enabled or np.random.rand() >= self.prob:
            return images, soft_targets

        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or np.random.rand() < 0.5)
        if use_cutmix:
            lam = float(np.random.beta(self.cutmix_alpha, self.cutmix_alpha))
            top, bottom, left, right = self._cutmix_box(images.size(-2), images.size(-1), lam)
            images = images.clone()
            images[:, :, top:bottom, left:right] = images.flip(0)[:, :, top:bottom, left:right]
            # The box was clipped at the borders, so recompute lambda from its real area.
            lam = 1.0 - (bottom - top) * (right - left) / (images.size(-2) * images.size(-1))
        else:
            lam = float(np.random.beta(self.mixup_alpha, self.mixup_alpha))
            images = images * lam + images.flip(0) * (1.0 - lam)

        soft_targets = soft_targets * lam + soft_targets.flip(0) * (1.0 - lam)
        return images, soft_targets


# ---------------------------------------------------------------------------
# Collate functions and samplers
# ---------------------------------------------------------------------------


def collate_dense(batch: Sequence[Tuple[torch.Tensor, Any]]) -> Dict[str, torch.Tensor]:
    """Stack images with their class labels or masks into a batch dictionary."""
    inputs = torch.stack([item[0] for item in batch])
    first_target = batch[0][1]
    if isinstance(first_target, torch.Tensor):
        targets = torch.stack([item[1] for item in batch])
    else:
        targets = torch.tensor([item[1] for item in batch], dtype=torch.long)
    return {"inputs": inputs, "targets": targets}


def collate_text(batch: Sequence[Tuple[torch.Tensor, int]]) -> Dict[str, torch.Tensor]:
    """Right-pad token sequences with PAD_TOKEN and return them with their lengths."""
    lengths = torch.tensor([len(tokens) for tokens, _ in batch], dtype=torch.long)
    max_len = int(lengths.max())
    tokens = torch.full((len(batch), max_len), PAD_TOKEN, dtype=torch.long)
    for row, (sequence, _) in enumerate(batch):
        tokens[row, : len(sequence)] = sequence
    targets = torch.tensor([label for _, label in batch], dtype=torch.long)
    return {"inputs": tokens, "lengths": lengths, "targets": targets}


class ClassBalancedSampler(Sampler[int]):
    """Draw indices with replacement so that every class is equally likely.

    Call ``set_epoch`` before each epoch to get a different, reproducible order.
    """

    def __init__(self, labels: torch.Tensor, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        counts = torch.bincount(labels).double()
        # The clamp avoids dividing by zero for classes without samples, whose weights are never indexed.
        self.weights = (1.0 / counts.clamp(min=1))[labels]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        indices = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.num_samples


def build_datasets(cfg: TrainConfig) -> Tuple[Dataset, Dataset]:
    """Create the training and validation sets for the task of ``cfg.model``.

    Both sets share the class patterns, so the validation set measures
    generalisation to new noise, shifts and shapes. The validation set is always
    class-balanced, whatever ``cfg.class_imbalance`` is.
    """
    train_seed, val_seed = cfg.seed + 1, cfg.seed + 2
    image_options = dict(
        num_classes=cfg.num_classes, image_size=cfg.image_size, channels=cfg.in_channels,
        noise_std=cfg.noise_std, pattern_seed=cfg.seed,
    )
    if cfg.task == "image":
        train_set: Dataset = SyntheticImageDataset(
            cfg.train_size, imbalance=cfg.class_imbalance, sample_seed=train_seed,
            transform=build_image_transform(cfg, train=True), **image_options,
        )
        val_set: Dataset = SyntheticImageDataset(
            cfg.val_size, imbalance=1.0, sample_seed=val_seed,
            transform=build_image_transform(cfg, train=False), **image_options,
        )
    elif cfg.task == "text":
        text_options = dict(
            num_classes=cfg.num_classes, vocab_size=cfg.vocab_size, min_len=cfg.min_seq_len,
            max_len=cfg.max_seq_len, keyword_rate=0.08,
        )
        masking = TokenMasking(cfg.token_mask_prob) if cfg.augment else None
        train_set = SyntheticTextDataset(
            cfg.train_size, imbalance=cfg.class_imbalance, sample_seed=train_seed, transform=masking, **text_options
        )
        val_set = SyntheticTextDataset(cfg.val_size, imbalance=1.0, sample_seed=val_seed, **text_options)
    else:
        padding = max(1, cfg.image_size // 16)
        train_set = SyntheticSegmentationDataset(
            cfg.train_size, sample_seed=train_seed,
            transform=SegmentationTransform(train=cfg.augment, padding=padding), **image_options,
        )
        val_set = SyntheticSegmentationDataset(
            cfg.val_size, sample_seed=val_seed, transform=SegmentationTransform(train=False, padding=0),
            **image_options,
        )
    return train_set, val_set


def build_loaders(cfg: TrainConfig, device: torch.device) -> Tuple[DataLoader, DataLoader]:
    """Build the training and validation DataLoaders for ``cfg``.

    The training loader draws from a class-balanced sampler when
    ``cfg.balanced_sampler`` is set and otherwise shuffles with a seeded generator.
    """
    train_set, val_set = build_datasets(cfg)
    options: Dict[str, Any] = {
        "num_workers": cfg.num_workers,
        "pin_memory": device.type == "cuda",
        "collate_fn": collate_text if cfg.task == "text" else collate_dense,
    }
    if cfg.num_workers > 0:
        options.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=seed_worker)

    if cfg.balanced_sampler:
        if cfg.task == "segmentation":
            raise ValueError("--balanced-sampler needs class labels and does not apply to segmentation")
        sampler = ClassBalancedSampler(train_set.labels, num_samples=len(train_set), seed=cfg.seed)
        train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True, **options)
    else:
        generator = torch.Generator().manual_seed(cfg.seed)
        train_loader = DataLoader(
            train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator, **options
        )
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size * 2, shuffle=False, drop_last=False, **options)

    if len(train_loader) == 0:
        raise ValueError(
            f"the training set of {len(train_set)} samples is smaller than one batch of {cfg.batch_size}"
        )
    logger.info(
        "data: %d training samples in %d batches, %d validation samples in %d batches",
        len(train_set), len(train_loader), len(val_set), len(val_loader),
    )
    return train_loader, val_loader


# ---------------------------------------------------------------------------
# Losses and metrics
# ---------------------------------------------------------------------------


def soft_target_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability distribution per sample, averaged over the batch."""
    return torch.sum(-soft_targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_classes: int, smooth: float = 1.0) -> torch.Tensor:
    """Return 1 minus the soft Dice score, averaged over classes.

    ``smooth`` keeps the score defined for classes absent from both the
    prediction and the batch.
    """
    probabilities = logits.float().softmax(dim=1)
    one_hot = F.one_hot(targets, num_classes).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    intersection = (probabilities * one_hot).sum(dims)
    cardinality = probabilities.sum(dims) + one_hot.sum(dims)
    dice = (2.0 * intersection + smooth) / (cardinality + smooth)
    return 1.0 - dice.mean()


class TaskLoss(nn.Module):
    """Loss of the configured task.

    Classification uses label-smoothed cross-entropy, or soft-target
    cross-entropy when mixup or CutMix produced soft targets. Segmentation
    adds cross-entropy and Dice loss with equal weight.
    """

    def __init__(self, task: str, num_classes: int, label_smoothing: float) -> None:
        super().__init__()
        self.task = task
        self.num_classes = num_classes
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, soft_targets: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if soft_targets is not None:
            return soft_target_cross_entropy(logits, soft_targets)
        loss = self.cross_entropy(logits, targets)
        if self.task == "segmentation":
            loss = loss + dice_loss(logits, targets, self.num_classes)
        return loss


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> List[int]:
    """Count the samples whose target is among the top-k predictions, for each k.

    A k larger than the number of classes counts as the number of classes.
    """
    max_k = min(max(ks), logits.size(1))
    top_predictions = logits.topk(max_k, dim=1).indices
    hits = top_predictions.eq(targets.unsqueeze(1))
    return [int(hits[:, : min(k, max_k)].any(dim=1).sum().item()) for k in ks]


class ConfusionMatrix:
    """Confusion matrix with rows for targets and columns for predictions."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of predicted and target class ids of any matching shape."""
        indices = targets.flatten().cpu() * self.num_classes + predictions.flatten().cpu()
        counts = torch.bincount(indices, minlength=self.num_classes**2)
        self.matrix += counts.view(self.num_classes, self.num_classes)

    def accuracy(self) -> float:
        return self.matrix.diag().sum().item() / max(self.matrix.sum().item(), 1)

    def recall(self) -> List[float]:
        totals = self.matrix.sum(dim=1).clamp(min=1)
        return (self.matrix.diag().double() / totals).tolist()

    def precision(self) -> List[float]:
        totals = self.matrix.sum(dim=0).clamp(min=1)
        return (self.matrix.diag().double() / totals).tolist()

    def mean_iou(self) -> float:
        """Mean intersection over union over the classes that occur in targets or predictions."""
        intersection = self.matrix.diag().double()
        union = self.matrix.sum(dim=0) + self.matrix.sum(dim=1) - self.matrix.diag()
        present = union > 0
        if not present.any():
            return 0.0
        return (intersection[present] / union[present].double()).mean().item()


# ---------------------------------------------------------------------------
# Optimiser, schedules, EMA, checkpoints and early stopping
# ---------------------------------------------------------------------------


def parameter_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Split parameters into a decayed group and one without weight decay.

    Biases, normalisation weights (every tensor with at most one dimension)
    and the names listed by ``model.no_weight_decay()`` get no decay.
    """
    skip_names = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim <= 1 or name in skip_names:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(cfg: TrainConfig, model: nn.Module, lr: Optional[float] = None) -> torch.optim.Optimizer:
    """Create AdamW or SGD over the parameter groups of ``model``."""
    groups = parameter_groups(model, cfg.weight_decay)
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2))


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> float:
    """Return the learning rate at ``step``: linear warm-up, then cosine decay to ``min_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    """Create the per-step scheduler, or return None for the manual schedule.

    The schedulers count optimizer steps, not micro-batches or epochs.
    """
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(int(cfg.warmup_epochs * steps_per_epoch), total_steps - 1)
    if cfg.scheduler == "manual":
        return None
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=max(warmup_steps, 1) / total_steps,
            anneal_strategy="cos", cycle_momentum=cfg.optimizer == "sgd",
        )
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=cfg.min_lr
    )
    if warmup_steps == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


class ModelEma:
    """Exponential moving average of a model's parameters and buffers.

    The decay rises from 0 towards ``decay`` and reaches about 63% of it after
    ``warmup_steps`` updates, so the average does not stay anchored to the
    random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int) -> None:
        self.module = copy.deepcopy(model)
        self.module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.warmup_steps = max(1, warmup_steps)
        self.updates = 0

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.warmup_steps))

    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights of ``model``; call after each optimizer step."""
        self.updates += 1
        decay = self.current_decay()
        with torch.no_grad():
            model_state = model.state_dict()
            for name, ema_value in self.module.state_dict().items():
                model_value = model_state[name].detach()
                if ema_value.dtype.is_floating_point:
                    ema_value.mul_(decay).add_(model_value, alpha=1.0 - decay)
                else:
                    # Integer buffers such as BatchNorm's num_batches_tracked are copied.
                    ema_value.copy_(model_value)

    def state_dict(self) -> Dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]


class EarlyStopping:
    """Stop when a metric to maximise has not improved by ``min_delta`` for ``patience`` evaluations."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf
        self.bad_evaluations = 0

    def step(self, value: float) -> bool:
        """Record a new value and return whether it is the best so far."""
        if value > self.best + self.min_delta:
            self.best = value
            self.bad_evaluations = 0
            return True
        self.bad_evaluations += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evaluations >= self.patience

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best = state["best"]
        self.bad_evaluations = state["bad_evaluations"]


@dataclass
class TrainState:
    """Progress counters that a checkpoint restores."""

    epoch: int = 0  # completed epochs, so also the index of the next epoch to run
    global_step: int = 0
    best_epoch: int = -1


def save_checkpoint(
    path: str, cfg: TrainConfig, state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler], scaler: torch.amp.GradScaler,
    ema: Optional[ModelEma], stopper: EarlyStopping,
) -> None:
    """Write everything needed to resume training.

    The file is written under a temporary name and then renamed, so an
    interrupted save leaves the previous checkpoint intact.
    """
    checkpoint = {
        "config": dataclasses.asdict(cfg),
        "epoch": state.epoch,
        "global_step": state.global_step,
        "best_epoch": state.best_epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "early_stopping": stopper.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    temporary_path = path + ".tmp"
    torch.save(checkpoint, temporary_path)
    os.replace(temporary_path, path)


def load_checkpoint(
    path: str, state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler], scaler: torch.amp.GradScaler,
    ema: Optional[ModelEma], stopper: EarlyStopping,
) -> None:
    """Restore a checkpoint written by save_checkpoint into the given objects."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    if ema is not None:
        if checkpoint["ema"] is None:
            logger.warning("checkpoint %s has no EMA weights; the EMA restarts from the model", path)
            ema.module.load_state_dict(model.state_dict())
        else:
            ema.load_state_dict(checkpoint["ema"])
    stopper.load_state_dict(checkpoint["early_stopping"])
    torch.set_rng_state(checkpoint["torch_rng"])
    state.epoch = checkpoint["epoch"]
    state.global_step = checkpoint["global_step"]
    state.best_epoch = checkpoint["best_epoch"]
    logger.info("resumed from %s at epoch %d, step %d", path, state.epoch, state.global_step)


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------


def autocast_dtype(cfg: TrainConfig) -> torch.dtype:
    return torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16


def move_batch(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    # lengths stay on the CPU because pack_padded_sequence needs them there.
    return {
        key: value if key == "lengths" else value.to(device, non_blocking=True) for key, value in batch.items()
    }


def forward_model(model: nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    if "lengths" in batch:
        return model(batch["inputs"], batch["lengths"])
    return model(batch["inputs"])


def train_one_epoch(
    cfg: TrainConfig, state: TrainState, model: nn.Module, loader: DataLoader, criterion: TaskLoss,
    optimizer: torch.optim.Optimizer, scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
    scaler: torch.amp.GradScaler, ema: Optional[ModelEma], mixer: Optional[MixupCutmix], device: torch.device,
    epoch: int, metrics_log: JsonlLogger,
) -> Dict[str, float]:
    """Train for one epoch and return the mean loss, accuracy and throughput.

    Gradients of ``cfg.accum_steps`` micro-batches are summed before each
    optimizer step. The last window of the epoch may be shorter, and each
    loss is divided by the size of its own window so that every step
    averages its micro-batches.
    """
    model.train()
    loss_meter = AverageMeter("loss")
    accuracy_meter = AverageMeter("acc")
    num_batches = len(loader)
    start_time = time.perf_counter()
    samples_seen = 0
    steps_per_epoch = math.ceil(num_batches / cfg.accum_steps)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(int(cfg.warmup_epochs * steps_per_epoch), total_steps - 1)
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    grad_norm = torch.zeros(())

    optimizer.zero_grad(set_to_none=True)
    for batch_index, batch in enumerate(loader):
        batch = move_batch(batch, device)
        targets = batch["targets"]
        soft_targets = None
        if mixer is not None and mixer.enabled:
            batch["inputs"], soft_targets = mixer(batch["inputs"], targets)

        window_start = (batch_index // cfg.accum_steps) * cfg.accum_steps
        window_size = min(cfg.accum_steps, num_batches - window_start)
        with torch.amp.autocast(device_type=device.type, dtype=autocast_dtype(cfg), enabled=cfg.amp):
            logits = forward_model(model, batch)
            loss = criterion(logits, targets, soft_targets)

        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"loss is {loss_value} at epoch {epoch}, batch {batch_index}; "
                "try a lower --lr or a smaller --grad-clip"
            )
        scaler.scale(loss / window_size).backward()

        if (batch_index + 1) % cfg.accum_steps == 0 or batch_index + 1 == num_batches:
            if scheduler is None:
                lr = warmup_cosine_lr(state.global_step, total_steps, warmup_steps, cfg.lr, cfg.min_lr)
                set_learning_rate(optimizer, lr)
            # Gradients must be unscaled before clipping, or max_norm would
            # apply to the scaled values.
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            state.global_step += 1

        # With mixed targets, accuracy counts the class with the larger mixing weight.
        hard_targets = soft_targets.argmax(dim=1) if soft_targets is not None else targets
        correct = (logits.argmax(dim=1) == hard_targets).sum().item()
        batch_size = targets.size(0)
        loss_meter.update(loss_value, batch_size)
        accuracy_meter.update(correct / hard_targets.numel(), batch_size)
        samples_seen += batch_size

        if batch_index % cfg.log_interval == 0 or batch_index + 1 == num_batches:
            lr = optimizer.param_groups[0]["lr"]
            samples_per_second = samples_seen / max(time.perf_counter() - start_time, 1e-9)
            logger.info(
                "epoch %d [%d/%d] %s %s lr %.3e grad-norm %.3f %.0f samples/s",
                epoch, batch_index + 1, num_batches, loss_meter, accuracy_meter, lr, grad_norm.item(),
                samples_per_second,
            )
            metrics_log.log({
                "kind": "train_step", "epoch": epoch, "step": state.global_step, "loss": loss_value, "lr": lr,
                "grad_norm": grad_norm.item(), "loss_scale": scaler.get_scale() if scaler.is_enabled() else 1.0,
            })

    elapsed = time.perf_counter() - start_time
    return {"loss": loss_meter.avg, "accuracy": accuracy_meter.avg, "samples_per_second": samples_seen / elapsed}


def evaluate(
    cfg: TrainConfig, model: nn.Module, loader: DataLoader, criterion: TaskLoss, device: torch.device
) -> Tuple[Dict[str, float], ConfusionMatrix]:
    """Return the validation loss and metrics of ``model`` and its confusion matrix.

    Classification reports top-1 and top-5 accuracy and segmentation reports
    pixel accuracy and mean IoU. The model's training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    loss_meter = AverageMeter("val_loss")
    confusion = ConfusionMatrix(cfg.num_classes)
    top1 = top5 = samples = 0

    with torch.no_grad():
        for batch in loader:
            batch = move_batch(batch, device)
            targets = batch["targets"]
            with torch.amp.autocast(device_type=device.type, dtype=autocast_dtype(cfg), enabled=cfg.amp):
                logits = forward_model(model, batch)
                loss = criterion(logits, targets)
            loss_meter.update(loss.item(), targets.size(0))
            confusion.update(logits.argmax(dim=1), targets)
            if cfg.task != "segmentation":
                correct1, correct5 = topk_correct(logits.float(), targets, ks=(1, 5))
                top1 += correct1
                top5 += correct5
                samples += targets.size(0)

    model.train(was_training)
    metrics = {"loss": loss_meter.avg, "accuracy": confusion.accuracy()}
    if cfg.task == "segmentation":
        metrics["mean_iou"] = confusion.mean_iou()
    else:
        metrics["top1"] = top1 / max(samples, 1)
        metrics["top5"] = top5 / max(samples, 1)
    return metrics, confusion


def primary_metric(cfg: TrainConfig, metrics: Dict[str, float]) -> float:
    """Return the validation metric that selects the best checkpoint (higher is better)."""
    return metrics["mean_iou"] if cfg.task == "segmentation" else metrics["top1"]



def set_sampler_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the training sampler which epoch starts, so that it reshuffles reproducibly."""
    if isinstance(loader.sampler, ClassBalancedSampler):
        loader.sampler.set_epoch(epoch)


def write_json(path: str, payload: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)


def fit(cfg: TrainConfig) -> Dict[str, Any]:
    """Train one configuration, evaluating every ``cfg.eval_every`` epochs, and return a summary.

    The summary contains the best value of the primary metric (top-1 accuracy,
    or mean IoU for segmentation) and the epoch that reached it. When
    ``cfg.ema`` is set, both the raw and the EMA weights are evaluated, and the
    EMA metric selects the best checkpoint and drives early stopping.
    """
    os.makedirs(cfg.run_dir, exist_ok=True)
    write_json(os.path.join(cfg.run_dir, "config.json"), dataclasses.asdict(cfg))
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)

    train_loader, val_loader = build_loaders(cfg, device)
    model = build_model(cfg).to(device)
    criterion = TaskLoss(cfg.task, cfg.num_classes, cfg.label_smoothing).to(device)
    optimizer = build_optimizer(cfg, model)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.accum_steps)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch)

    # bfloat16 has the exponent range of float32, so only float16 needs loss scaling.
    use_scaler = cfg.amp and cfg.amp_dtype == "float16" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    ema = ModelEma(model, cfg.ema_decay, cfg.ema_warmup_steps) if cfg.ema else None
    mixer = None
    if cfg.task == "image" and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0):
        mixer = MixupCutmix(cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob, cfg.num_classes, cfg.label_smoothing)
    stopper = EarlyStopping(cfg.patience, cfg.min_delta)
    state = TrainState()

    last_path = os.path.join(cfg.run_dir, "last.pt")
    best_path = os.path.join(cfg.run_dir, "best.pt")
    resume_path = cfg.resume
    if resume_path == "auto":
        resume_path = last_path if os.path.exists(last_path) else ""
    if resume_path:
        if not os.path.exists(resume_path):
            raise FileNotFoundError(f"--resume checkpoint not found: {resume_path}")
        load_checkpoint(resume_path, state, model, optimizer, scheduler, scaler, ema, stopper)

    start_time = time.time()
    with JsonlLogger(os.path.join(cfg.run_dir, "metrics.jsonl")) as metrics_log:
        for epoch in range(state.epoch, cfg.epochs):
            set_sampler_epoch(train_loader, epoch)
            train_metrics = train_one_epoch(
                cfg, state, model, train_loader, criterion, optimizer, scheduler, scaler, ema, mixer, device, epoch,
                metrics_log,
            )
            state.epoch = epoch + 1
            record: Dict[str, Any] = {"kind": "epoch", "epoch": epoch, "step": state.global_step}
            record.update({f"train_{key}": value for key, value in train_metrics.items()})

            stop = False
            if state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs:
                val_metrics, confusion = evaluate(cfg, model, val_loader, criterion, device)
                record.update({f"val_{key}": value for key, value in val_metrics.items()})
                if ema is not None:
                    val_metrics, confusion = evaluate(cfg, ema.module, val_loader, criterion, device)
                    record.update({f"ema_val_{key}": value for key, value in val_metrics.items()})

                metric = primary_metric(cfg, val_metrics)
                if stopper.step(metric):
                    state.best_epoch = epoch
                    save_checkpoint(best_path, cfg, state, model, optimizer, scheduler, scaler, ema, stopper)
                    confusion_record = {
                        "epoch": epoch, "matrix": confusion.matrix.tolist(),
                        "recall": confusion.recall(), "precision": confusion.precision(),
                    }
                    write_json(os.path.join(cfg.run_dir, "best_confusion.json"), confusion_record)
                logger.info(
                    "epoch %d: train loss %.4f, val loss %.4f, metric %.4f (best %.4f at epoch %d)",
                    epoch, train_metrics["loss"], val_metrics["loss"], metric, stopper.best, state.best_epoch,
                )
                stop = stopper.should_stop

            metrics_log.log(record)
            if state.epoch % cfg.save_every == 0 or state.epoch == cfg.epochs or stop:
                save_checkpoint(last_path, cfg, state, model, optimizer, scheduler, scaler, ema, stopper)
            if stop:
                logger.info("early stopping: no improvement in %d evaluations", cfg.patience)
                break

    elapsed = time.time() - start_time
    summary = {
        "run_name": cfg.run_name,
        "best_metric": stopper.best,
        "best_epoch": state.best_epoch,
        "epochs_completed": state.epoch,
        "optimizer_steps": state.global_step,
        "seconds": elapsed,
    }
    write_json(os.path.join(cfg.run_dir, "summary.json"), summary)
    logger.info("finished %s in %.0f s, best metric %.4f", cfg.run_name, elapsed, stopper.best)
    return summary


# ---------------------------------------------------------------------------
# Learning-rate finder and sweep
# ---------------------------------------------------------------------------


def run_lr_finder(cfg: TrainConfig) -> Dict[str, Any]:
    """Run the learning-rate range test and write the curve to ``lr_find.json``.

    The learning rate grows geometrically from ``lr_find_start`` to
    ``lr_find_end``, one optimizer step per batch. The test stops early once
    the smoothed loss exceeds four times its minimum. The suggestion is the
    learning rate where the smoothed loss falls fastest, a common heuristic
    that should be checked against the curve.
    """
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)
    train_loader, _ = build_loaders(cfg, device)
    model = build_model(cfg).to(device)
    model.train()
    criterion = TaskLoss(cfg.task, cfg.num_classes, cfg.label_smoothing).to(device)
    optimizer = build_optimizer(cfg, model, lr=cfg.lr_find_start)
    use_scaler = cfg.amp and cfg.amp_dtype == "float16" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")

    growth = (cfg.lr_find_end / cfg.lr_find_start) ** (1.0 / max(cfg.lr_find_steps - 1, 1))
    smoothing = 0.98
    running_loss = 0.0
    best_loss = math.inf
    lrs: List[float] = []
    losses: List[float] = []
    batches = iter(train_loader)

    for step in range(cfg.lr_find_steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(train_loader)
            batch = next(batches)
        batch = move_batch(batch, device)
        lr = cfg.lr_find_start * growth**step
        set_learning_rate(optimizer, lr)

        optimizer.zero_grad(set_to_none=True)
        with torch.amp.autocast(device_type=device.type, dtype=autocast_dtype(cfg), enabled=cfg.amp):
            loss = criterion(forward_model(model, batch), batch["targets"])
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        scaler.step(optimizer)
        scaler.update()

        # Exponential moving average with bias correction, as in Adam.
        running_loss = smoothing * running_loss + (1.0 - smoothing) * loss.item()
        smoothed = running_loss / (1.0 - smoothing ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > 4.0 * best_loss:
            logger.info("lr finder: loss diverged at lr %.3e after %d steps", lr, step + 1)
            break
        best_loss = min(best_loss, smoothed)

    suggestion = None
    # The first tenth of the curve is skipped because the smoothed loss is
    # still dominated by the first few batches there.
    skip = len(losses) // 10
    if len(losses) - skip >= 3:
        slopes = np.gradient(np.array(losses[skip:]), np.log(np.array(lrs[skip:])))
        suggestion = float(lrs[skip + int(np.argmin(slopes))])
        logger.info("lr finder: steepest descent at lr %.3e", suggestion)
    else:
        logger.warning("lr finder: only %d steps ran, too few to suggest a learning rate", len(losses))

    result = {"lrs": lrs, "losses": losses, "suggested_lr": suggestion}
    write_json(os.path.join(cfg.run_dir, "lr_find.json"), result)
    return result


def run_sweep(cfg: TrainConfig) -> List[Dict[str, Any]]:
    """Train once per (learning rate, weight decay) pair and write ``sweep.json``.

    Each trial runs ``cfg.sweep_epochs`` epochs in its own subfolder of the
    run folder, with the same seed, so the trials differ only in the two values.
    """
    results: List[Dict[str, Any]] = []
    sweep_path = os.path.join(cfg.run_dir, "sweep.json")
    for lr, weight_decay in itertools.product(cfg.sweep_lrs, cfg.sweep_weight_decays):
        trial_cfg = dataclasses.replace(
            cfg, lr=lr, min_lr=min(cfg.min_lr, lr), weight_decay=weight_decay, epochs=cfg.sweep_epochs,
            sweep=False, resume="", output_dir=cfg.run_dir, run_name=f"lr{lr:g}-wd{weight_decay:g}",
        )
        validate_config(trial_cfg)
        logger.info("sweep trial %d: lr %g, weight decay %g", len(results) + 1, lr, weight_decay)
        summary = fit(trial_cfg)
        results.append({"lr": lr, "weight_decay": weight_decay, **summary})
        # Rewritten after every trial so that an interrupted sweep keeps its results.
        write_json(sweep_path, results)

    best = max(results, key=lambda result: result["best_metric"])
    logger.info(
        "sweep: best metric %.4f with lr %g and weight decay %g", best["best_metric"], best["lr"], best["weight_decay"]
    )
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_config(argv)
    setup_logging(cfg.run_dir)
    logger.info("config: %s", json.dumps(dataclasses.asdict(cfg), sort_keys=True))
    if cfg.lr_find:
        run_lr_finder(cfg)
    elif cfg.sweep:
        run_sweep(cfg)
    else:
        fit(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
