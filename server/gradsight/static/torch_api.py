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
