"""Names of the PyTorch (and companion library) APIs that the rules recognise."""

from __future__ import annotations

SGD_FAMILY = frozenset({"torch.optim.SGD", "torch.optim.ASGD"})
ADAM_FAMILY = frozenset(
    {
        "torch.optim.Adam",
        "torch.optim.AdamW",
        "torch.optim.NAdam",
        "torch.optim.RAdam",
        "torch.optim.Adamax",
        "torch.optim.RMSprop",
        "torch.optim.Adagrad",
        "torch.optim.SparseAdam",
    }
)
OTHER_OPTIMIZERS = frozenset(
    {"torch.optim.LBFGS", "torch.optim.Adadelta", "torch.optim.Rprop", "torch.optim.Adafactor", "torch.optim.Muon"}
)
OPTIMIZERS = SGD_FAMILY | ADAM_FAMILY | OTHER_OPTIMIZERS

# Schedulers that set the learning rate on their own terms (a peak value or an arbitrary factor),
# so the lr given to the optimizer is not the lr it trains with.
LR_OVERRIDING_SCHEDULERS = frozenset(
    {
        "torch.optim.lr_scheduler.OneCycleLR",
        "torch.optim.lr_scheduler.CyclicLR",
        "torch.optim.lr_scheduler.LambdaLR",
        "torch.optim.lr_scheduler.MultiplicativeLR",
    }
)

# Schedulers that usually start from a fraction of the lr (warmup), making a large peak lr reasonable.
WARMUP_SCHEDULERS = frozenset(
    {
        "torch.optim.lr_scheduler.LinearLR",
        "torch.optim.lr_scheduler.SequentialLR",
        "torch.optim.lr_scheduler.ChainedScheduler",
    }
)

# Training loop and mixed precision (GS4, GS6).
GRAD_SCALERS = frozenset(
    {
        "torch.amp.GradScaler",
        "torch.cuda.amp.GradScaler",
        "torch.cpu.amp.GradScaler",
        "torch.amp.grad_scaler.GradScaler",
        "torch.distributed.fsdp.sharded_grad_scaler.ShardedGradScaler",
    }
)
# Qualified-name prefixes of learning-rate schedulers and of the functions that build them.
SCHEDULER_PREFIXES = ("torch.optim.lr_scheduler.", "transformers.get_", "transformers.optimization.", "timm.scheduler.", "diffusers.optimization.")

MODULE_CONTAINERS = frozenset({"torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict"})
NOT_MODULES = frozenset(
    {
        "torch.nn.Parameter",
        "torch.nn.Buffer",
        "torch.nn.ParameterList",
        "torch.nn.ParameterDict",
        "torch.nn.UninitializedParameter",
        "torch.nn.UninitializedBuffer",
        "torch.nn.Module",
    }
)
MODULE_BASE_CLASSES = frozenset(
    {
        "torch.nn.Module",
        "torch.nn.Sequential",
        "torch.nn.ModuleList",
        "torch.nn.ModuleDict",
        "lightning.LightningModule",
        "lightning.pytorch.LightningModule",
        "pytorch_lightning.LightningModule",
        "transformers.PreTrainedModel",
    }
)
# Methods of nn.Module that return the module itself (or a module standing for it).
MODULE_RETURNING_METHODS = frozenset(
    {"to", "cuda", "cpu", "train", "eval", "float", "half", "double", "bfloat16", "requires_grad_", "type", "apply", "share_memory", "to_empty", "xpu", "mps"}
)
MODULE_WRAPPERS = frozenset(
    {
        "torch.compile",
        "torch.nn.DataParallel",
        "torch.nn.parallel.DistributedDataParallel",
        "torch.nn.parallel.DataParallel",
        "torch.distributed.fsdp.FullyShardedDataParallel",
        "copy.deepcopy",
    }
)
# Attributes of library models that hold parameters rather than submodules.
PARAMETER_ATTRIBUTES = frozenset({"weight", "bias", "in_proj_weight", "in_proj_bias", "class_token", "cls_token", "pos_embedding", "pos_embed", "logit_scale"})
TENSOR_FACTORIES = frozenset(
    {
        "torch.tensor",
        "torch.randn",
        "torch.rand",
        "torch.zeros",
        "torch.ones",
        "torch.empty",
        "torch.full",
        "torch.arange",
        "torch.linspace",
        "torch.eye",
        "torch.randint",
        "torch.randn_like",
        "torch.zeros_like",
        "torch.ones_like",
        "torch.empty_like",
        "torch.as_tensor",
        "torch.from_numpy",
    }
)

# Autograd graph and loss functions (GS2, GS5).

# Context managers and decorators that turn off gradient recording.
NO_GRAD = frozenset({"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.grad_mode.no_grad"})
SET_GRAD_ENABLED = frozenset({"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"})
ENABLE_GRAD = frozenset({"torch.enable_grad", "torch.autograd.enable_grad"})

SOFTMAX = frozenset({"torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax"})
LOG_SOFTMAX = frozenset({"torch.log_softmax", "torch.nn.functional.log_softmax", "torch.special.log_softmax"})
SIGMOID = frozenset({"torch.sigmoid", "torch.nn.functional.sigmoid", "torch.special.expit"})
ACTIVATION_MODULES = {"torch.nn.Softmax": "softmax", "torch.nn.LogSoftmax": "log_softmax", "torch.nn.Sigmoid": "sigmoid"}

# Loss functions whose second argument is the target (no gradient is expected through it).
LOSSES_WITH_TARGET = frozenset(
    {
        "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
        "binary_cross_entropy_with_logits", "kl_div", "poisson_nll_loss", "gaussian_nll_loss", "soft_margin_loss",
        "multilabel_soft_margin_loss", "multi_margin_loss", "multilabel_margin_loss",
        "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss",
        "BCEWithLogitsLoss", "KLDivLoss", "PoissonNLLLoss", "GaussianNLLLoss", "SoftMarginLoss",
        "MultiLabelSoftMarginLoss", "MultiMarginLoss", "MultiLabelMarginLoss",
    }
)
CROSS_ENTROPY = frozenset({"torch.nn.functional.cross_entropy", "torch.nn.CrossEntropyLoss"})
NLL_LOSS = frozenset({"torch.nn.functional.nll_loss", "torch.nn.NLLLoss"})
BCE_WITH_LOGITS = frozenset({"torch.nn.functional.binary_cross_entropy_with_logits", "torch.nn.BCEWithLogitsLoss"})

# nn modules without parameters: building one in `forward` or calling one passes values through.
PARAMETER_FREE_MODULES = frozenset(
    "torch.nn." + name
    for name in (
        "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Tanh", "Softplus",
        "Softsign", "Softmax", "Softmax2d", "LogSoftmax", "LogSigmoid", "Hardtanh", "Hardswish", "Hardsigmoid",
        "Hardshrink", "Softshrink", "Tanhshrink", "Threshold", "GLU", "Softmin", "Identity", "Flatten", "Unflatten",
        "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "MaxPool1d",
        "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "LPPool1d", "LPPool2d",
        "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "FractionalMaxPool2d", "Upsample", "UpsamplingNearest2d",
        "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "ZeroPad1d", "ZeroPad2d",
        "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d",
        "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d",
        "CircularPad2d", "CircularPad3d", "Fold", "Unfold", "CosineSimilarity", "PairwiseDistance", "LocalResponseNorm",
        # Loss modules hold no parameters (a class weight, where given, is a buffer).
        "L1Loss", "MSELoss", "CrossEntropyLoss", "CTCLoss", "NLLLoss", "PoissonNLLLoss", "GaussianNLLLoss", "KLDivLoss",
        "BCELoss", "BCEWithLogitsLoss", "MarginRankingLoss", "HingeEmbeddingLoss", "MultiLabelMarginLoss", "HuberLoss",
        "SmoothL1Loss", "SoftMarginLoss", "MultiLabelSoftMarginLoss", "CosineEmbeddingLoss", "MultiMarginLoss",
        "TripletMarginLoss", "TripletMarginWithDistanceLoss",
    )
)
# Normalization layers that have no parameters when built with `affine=False` / `elementwise_affine=False`.
NORMALIZATION_AFFINE_FLAG = {
    "torch.nn.LayerNorm": ("elementwise_affine", True),
    "torch.nn.RMSNorm": ("elementwise_affine", True),
    "torch.nn.GroupNorm": ("affine", True),
    "torch.nn.BatchNorm1d": ("affine", True),
    "torch.nn.BatchNorm2d": ("affine", True),
    "torch.nn.BatchNorm3d": ("affine", True),
    "torch.nn.InstanceNorm1d": ("affine", False),
    "torch.nn.InstanceNorm2d": ("affine", False),
    "torch.nn.InstanceNorm3d": ("affine", False),
}
INTEGER_DTYPES = frozenset(
    "torch." + name
    for name in ("long", "int", "int64", "int32", "int16", "int8", "uint8", "short", "bool", "LongTensor", "IntTensor", "ByteTensor", "BoolTensor", "cuda.LongTensor")
)
# Methods that return a copy of a tensor on another device or with another dtype.
MOVE_METHODS = frozenset({"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "type", "xpu", "mps"})


NORMALIZE = frozenset(
    {"torchvision.transforms.Normalize", "torchvision.transforms.v2.Normalize"}
)
NORMALIZE_FUNCTIONS = frozenset(
    {"torchvision.transforms.functional.normalize", "torchvision.transforms.v2.functional.normalize"}
)
COMPOSE = frozenset({"torchvision.transforms.Compose", "torchvision.transforms.v2.Compose", "torch.nn.Sequential"})
# Transforms whose output is a float tensor scaled to [0, 1].
SCALE_TO_UNIT = frozenset(
    {"torchvision.transforms.ToTensor", "torchvision.transforms.v2.ToTensor", "torchvision.transforms.ConvertImageDtype", "torchvision.transforms.v2.ConvertImageDtype"}
)
TO_DTYPE = frozenset({"torchvision.transforms.v2.ToDtype"})


def is_module_constructor(qualname: str) -> bool:
    """Tell whether calling `qualname` builds an nn.Module: a layer, a container or a library model."""
    if qualname in NOT_MODULES:
        return False
    last = qualname.rsplit(".", 1)[-1]
    if qualname.startswith("torch.nn.") and qualname.count(".") == 2 and last[:1].isupper():
        return True
    if qualname.startswith("torchvision.models."):
        return last[:1].islower() and last not in ("get_weight", "list_models", "get_model_weights", "get_model_builder")
    if qualname in ("timm.create_model", "torch.hub.load"):
        return True
    return qualname.startswith("transformers.") and last == "from_pretrained"


def is_library_model(qualname: str | None) -> bool:
    return bool(qualname) and not qualname.startswith("torch.nn.")  # type: ignore[union-attr]
