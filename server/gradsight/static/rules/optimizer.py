"""GS1: optimizer and learning-rate schedule.

GS101 lr-too-small and GS102 lr-too-large check the learning rate an optimizer is built with,
after resolving it through constants, argparse defaults, function defaults and config dicts.
Both stay quiet when something else sets the learning rate later: a scheduler that sets it on
its own terms (OneCycleLR, CyclicLR, LambdaLR, MultiplicativeLR) or code that writes
`param_group["lr"]`, as warmup loops do.

The other rules check how the optimizer is built and kept. GS103 params-consumed reports a
parameter generator already iterated, or an empty list. GS104 stale-optimizer reports the model
replaced by a new object after the optimizer was built. GS105 bad-hyperparameter checks
momentum, betas and weight decay, and GS106 lr-schedule-zero a scheduler that sets the lr to 0.
GS107 tiny-grad-clip checks clipping maximums, and GS108 optimizer-in-loop reports an optimizer
rebuilt on every training iteration.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradsight.findings import Fix
from gradsight.static import loops, torch_api
from gradsight.static.registry import after_walk, on
from gradsight.static.semantic import walk
from gradsight.static.values import Resolved

if TYPE_CHECKING:
    from gradsight.static.context import Context

_STATE = "GS1"


@dataclass
class _OptimizerCall:
    call: ast.Call
    qualname: str
    target: str | None


@dataclass
class _Facts:
    optimizers: list[_OptimizerCall]
    # Optimizer variables handed to a scheduler that sets the lr itself; None stands for "unknown variable".
    overridden: set[str | None]
    writes_param_group_lr: bool
    # torch.optim.lr_scheduler constructors, with their qualified names (GS106).
    schedulers: list[tuple[ast.Call, str]] = field(default_factory=list)
    # Optimizer variables whose lr a scheduler raises above the initial value (a gamma above 1, as
    # LR range tests use), which silences GS101, and those with a warmup, which silences GS102.
    raised: set[str | None] = field(default_factory=set)
    warmed_up: set[str | None] = field(default_factory=set)


def _facts(ctx: Context) -> _Facts:
    if _STATE not in ctx.state:
        ctx.state[_STATE] = _Facts([], set(), False)
    return ctx.state[_STATE]


def format_number(value: float) -> str:
    """Format a number as people write it in code: 1e-10, 0.001, 5."""
    text = f"{value:g}"
    mantissa, separator, exponent = text.partition("e")
    if not separator:
        return text
    sign = "-" if exponent.startswith("-") else ""
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"


@on(ast.Call)
def collect_calls(ctx: Context, call: ast.Call) -> None:
    qualname = ctx.model.call_qualname(call)
    facts = _facts(ctx)
    if qualname in torch_api.OPTIMIZERS:
        facts.optimizers.append(_OptimizerCall(call, qualname, _assigned_name(ctx, call)))
    elif qualname is not None and qualname.startswith("torch.optim.lr_scheduler."):
        facts.schedulers.append((call, qualname))
        optimizer = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "optimizer"), None)
        target = optimizer.id if isinstance(optimizer, ast.Name) else None
        if qualname in torch_api.LR_OVERRIDING_SCHEDULERS:
            facts.overridden.add(target)
        if qualname in torch_api.WARMUP_SCHEDULERS:
            facts.warmed_up.add(target)
        gamma = ctx.values.number(next((k.value for k in call.keywords if k.arg == "gamma"), None))
        if gamma is not None and gamma.value > 1:  # type: ignore[operator]
            facts.raised.add(target)
    elif qualname is not None and "warmup" in qualname.rsplit(".", 1)[-1].lower():
        # Warmup helpers of other libraries, such as transformers.get_linear_schedule_with_warmup(optimizer, ...).
        optimizer = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "optimizer"), None)
        facts.warmed_up.add(optimizer.id if isinstance(optimizer, ast.Name) else None)


@on(ast.Assign)
def collect_lr_writes(ctx: Context, node: ast.Assign) -> None:
    # `group["lr"] = ...` (warmup, manual decay, LR finders): the optimizer's initial lr is not final.
    for target in node.targets:
        if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) and target.slice.value in ("lr", "initial_lr"):
            _facts(ctx).writes_param_group_lr = True


@on(ast.Call)
def collect_group_updates(ctx: Context, call: ast.Call) -> None:
    # `group.update(lr=...)` on a parameter group.
    if isinstance(call.func, ast.Attribute) and call.func.attr == "update" and any(k.arg == "lr" for k in call.keywords):
        _facts(ctx).writes_param_group_lr = True


@after_walk
def check_learning_rates(ctx: Context) -> None:
    facts = _facts(ctx)
    if facts.writes_param_group_lr or None in facts.overridden:
        return
    for optimizer in facts.optimizers:
        if optimizer.target is not None and optimizer.target in facts.overridden:
            continue
        raised = None in facts.raised or optimizer.target in facts.raised
        warmed_up = None in facts.warmed_up or optimizer.target in facts.warmed_up
        for node, resolved, group in _learning_rates(ctx, optimizer.call):
            _check_learning_rate(ctx, optimizer, node, resolved, group, raised=raised, warmed_up=warmed_up)


def _assigned_name(ctx: Context, call: ast.Call) -> str | None:
    parent = ctx.model.parent(call)
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name):
        return parent.targets[0].id
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Attribute):
        return parent.targets[0].attr
    return None


def _learning_rates(ctx: Context, call: ast.Call) -> list[tuple[ast.AST, Resolved, int | None]]:
    """Return each learning rate of an optimizer call: the `lr` argument and any per-group `"lr"`.

    Each item is the node to report at, its resolved value, and the parameter group index
    (None for the optimizer-wide lr).
    """
    found: list[tuple[ast.AST, Resolved, int | None]] = []
    lr_keyword = next((k for k in call.keywords if k.arg == "lr"), None)
    # Every torch.optim optimizer takes (params, lr, ...) positionally.
    lr_node: ast.AST | None = lr_keyword if lr_keyword is not None else (call.args[1] if len(call.args) > 1 else None)
    lr_value = lr_keyword.value if lr_keyword is not None else lr_node
    unpacked = ctx.values.unpacked_keyword(call, "lr") if lr_node is None else None
    if unpacked is not None:
        # `SGD(params, **config)` with `config = {"lr": 1e-10, ...}` is reported at `**config`.
        lr_node, lr_value = unpacked
    if lr_node is not None:
        resolved = ctx.values.number(lr_value)
        if resolved is not None:
            found.append((lr_node, resolved, None))

    params = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "params"), None)
    groups: list[tuple[ast.AST, Resolved, int]] = []
    every_group_sets_lr = isinstance(params, (ast.List, ast.Tuple)) and bool(params.elts)
    if isinstance(params, (ast.List, ast.Tuple)):
        for index, group in enumerate(params.elts):
            if not isinstance(group, ast.Dict):
                every_group_sets_lr = False
                continue
            lr_values = [value for key, value in zip(group.keys, group.values) if isinstance(key, ast.Constant) and key.value == "lr"]
            if not lr_values:
                every_group_sets_lr = False
            for value in lr_values:
                resolved = ctx.values.number(value)
                if resolved is not None:
                    groups.append((value, resolved, index))
    if every_group_sets_lr:
        found = []  # The optimizer-wide default is never used when every group sets its own lr.
    # A group with lr 0 beside groups that train is a deliberate freeze of that group.
    if any(float(r.value) > ctx.thresholds.lr_min for _, r, _ in groups):  # type: ignore[arg-type]
        groups = [item for item in groups if float(item[1].value) != 0]  # type: ignore[arg-type]
    return found + groups


def _check_learning_rate(
    ctx: Context,
    optimizer: _OptimizerCall,
    node: ast.AST,
    resolved: Resolved,
    group: int | None,
    *,
    raised: bool,
    warmed_up: bool,
) -> None:
    name = optimizer.qualname.rsplit(".", 1)[-1]
    value = float(resolved.value)  # type: ignore[arg-type]
    value_node = node.value if isinstance(node, ast.keyword) else node
    elsewhere = resolved.origin is not value_node and ctx.line_of(resolved.origin) != ctx.line_of(node)
    details = []
    if group is not None:
        details.append(f"parameter group {group}")
    if elsewhere:
        # Argparse and parameter defaults describe themselves; other values are named as the call writes them.
        written = ctx.text(value_node)
        if isinstance(node, ast.keyword) and node.arg is None:
            written = f"{written}['lr']"  # the entry of a `**config` argument
        described = resolved.via if resolved.via.startswith(("the default", "parser.")) else f"`{written}`"
        details.append(f"{described}, line {ctx.line_of(resolved.origin)}")
    where = f" ({'; '.join(details)})" if details else ""
    related = (ctx.related(resolved.origin, f"learning rate {format_number(value)} is set here"),) if elsewhere else ()

    thresholds = ctx.thresholds
    if value < 0:
        ctx.report(
            "GS101",
            node,
            f"learning rate {format_number(value)}{where} is negative: torch.optim rejects it with "
            f"'Invalid learning rate', and a negative step would climb the loss; {_typical_range(optimizer.qualname)}",
            related=related,
        )
        return
    if value <= thresholds.lr_min and not raised:
        if value == 0:
            effect = f"{name} never changes the weights and the loss cannot improve"
        else:
            effect = f"{name} barely changes the weights and the loss will hardly move"
        ctx.report(
            "GS101",
            node,
            f"learning rate {format_number(value)}{where} is so small that {effect}; "
            f"{_typical_range(optimizer.qualname)}",
            related=related,
        )
        return
    if warmed_up or (optimizer.qualname in torch_api.SGD_FAMILY and _clips_gradients(ctx)):
        # Large peak learning rates with warmup (large-batch SGD) are a known recipe. Clipping bounds an SGD
        # step (the PyTorch transformer tutorial trains with SGD at lr 5 and clip_grad_norm_ 0.5), but not an
        # Adam step, which is normalised by the gradient's own scale.
        return

    if optimizer.qualname in torch_api.SGD_FAMILY:
        limit: float | None = thresholds.sgd_lr_max
    elif optimizer.qualname in torch_api.ADAM_FAMILY:
        limit = thresholds.adam_lr_max
    else:
        limit = None
    if limit is not None and value > limit:
        ctx.report(
            "GS102",
            node,
            f"learning rate {format_number(value)}{where} is too large for {name} "
            f"(above {format_number(limit)}): updates overshoot, the loss diverges or turns NaN; "
            f"{_typical_range(optimizer.qualname)}",
            related=related,
        )


def _clips_gradients(ctx: Context) -> bool:
    return any(ctx.model.calls_named(name) for name in ("clip_grad_norm_", "clip_grad_value_", "clip_gradients"))


def _typical_range(qualname: str) -> str:
    name = qualname.rsplit(".", 1)[-1]
    if qualname in torch_api.SGD_FAMILY:
        return f"typical values for {name} are 1e-3 to 1e-1"
    if qualname in torch_api.ADAM_FAMILY:
        return (
            f"typical values for {name} are 1e-5 to 1e-3 (lower when fine-tuning large pretrained models: if this value "
            "is intended, lower `lr-min` under [tool.gradsight.thresholds])"
        )
    return "typical values are 1e-5 to 1e-1 depending on the optimizer"


# GS103 params-consumed

# Calls that iterate over an argument (or wrap it in an iterator that the caller then iterates).
_CONSUMERS = frozenset(
    {"list", "tuple", "set", "frozenset", "sorted", "sum", "any", "all", "max", "min", "next", "dict", "enumerate", "zip", "map", "filter"}
)
_GENERATOR_FACTORIES = frozenset({"filter", "map", "iter", "zip", "itertools.chain", "itertools.islice"})


@after_walk
def check_consumed_parameters(ctx: Context) -> None:
    for optimizer in _facts(ctx).optimizers:
        params = _params_argument(optimizer.call)
        if params is None:
            continue
        if isinstance(params, (ast.List, ast.Tuple)) and not params.elts:
            _report_empty(ctx, optimizer, params, params)
        elif isinstance(params, ast.Name):
            _check_parameter_variable(ctx, optimizer, params)


def _params_argument(call: ast.Call) -> ast.expr | None:
    return call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "params"), None)


def _check_parameter_variable(ctx: Context, optimizer: _OptimizerCall, params: ast.Name) -> None:
    bindings = ctx.model.lookup(params.id, params)
    if len(bindings) != 1 or bindings[0].kind != "assign" or bindings[0].index or bindings[0].value is None:
        return
    binding = bindings[0]
    value = binding.value
    if isinstance(value, ast.List) and not value.elts:
        if not _is_appended_to(ctx, binding, params.id, optimizer.call):
            _report_empty(ctx, optimizer, params, binding.node)
        return
    if not _makes_generator(ctx, value):
        return
    use = _first_consuming_use(ctx, binding, params.id, optimizer.call)
    if use is not None:
        _report_consumed(ctx, optimizer, params, binding, use)


def _makes_generator(ctx: Context, value: ast.expr) -> bool:
    """Tell whether an expression gives a one-shot iterator: `m.parameters()`, a generator expression, `filter(...)`."""
    if isinstance(value, ast.GeneratorExp):
        return True
    if not isinstance(value, ast.Call):
        return False
    if isinstance(value.func, ast.Attribute) and value.func.attr in ("parameters", "named_parameters"):
        return ctx.kinds.is_module(value.func.value) or not value.args
    qualname = ctx.model.call_qualname(value) or (value.func.id if isinstance(value.func, ast.Name) else None)
    return qualname in _GENERATOR_FACTORIES


def _first_consuming_use(ctx: Context, binding, name: str, optimizer_call: ast.Call) -> ast.AST | None:
    """Return the first use of the generator, after it is made and before the optimizer, that iterates it."""
    start = (binding.node.lineno, binding.node.col_offset)
    end = (optimizer_call.lineno, optimizer_call.col_offset)
    function = ctx.model.enclosing_function(binding.node)
    scope_node = function if function is not None else ctx.tree
    uses = []
    for node in walk(scope_node):
        if not (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)):
            continue
        if not start < (node.lineno, node.col_offset) < end:
            continue
        if ctx.model.enclosing_function(node) is not function or binding not in ctx.model.lookup(name, node):
            continue
        if _consumes(ctx, node):
            uses.append(node)
    return min(uses, key=lambda node: (node.lineno, node.col_offset), default=None)


def _consumes(ctx: Context, use: ast.Name) -> bool:
    parent = ctx.model.parent(use)
    if isinstance(parent, (ast.For, ast.AsyncFor)) and parent.iter is use:
        return True
    if isinstance(parent, ast.comprehension) and parent.iter is use:
        return True
    if isinstance(parent, ast.Starred):
        return True
    if isinstance(parent, ast.Call) and use in parent.args:
        qualname = ctx.model.call_qualname(parent) or ""
        callee = parent.func.id if isinstance(parent.func, ast.Name) else ""
        return callee in _CONSUMERS or qualname in torch_api.OPTIMIZERS or qualname.startswith(("torch.nn.utils.", "itertools."))
    return False


def _is_appended_to(ctx: Context, binding, name: str, optimizer_call: ast.Call) -> bool:
    function = ctx.model.enclosing_function(binding.node)
    for node in ast.walk(function if function is not None else ctx.tree):
        if node is optimizer_call:
            continue
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == name:
            return True  # `params.append(...)`, `params.extend(...)`, `params += ...` reads it too.
        if isinstance(node, (ast.Call, ast.BinOp)) and any(isinstance(arg, ast.Name) and arg.id == name for arg in getattr(node, "args", ())):
            return True  # Passed to a function that may fill it.
    return False


def _report_empty(ctx: Context, optimizer: _OptimizerCall, node: ast.AST, origin: ast.AST) -> None:
    name = optimizer.qualname.rsplit(".", 1)[-1]
    related = () if origin is node else (ctx.related(origin, "the empty list is made here"),)
    ctx.report(
        "GS103",
        node,
        f"{name} receives an empty parameter list: there is nothing to train, and torch.optim raises "
        f"\"optimizer got an empty parameter list\"; pass `model.parameters()` or the list of trainable parameters",
        related=related,
    )


def _report_consumed(ctx: Context, optimizer: _OptimizerCall, params: ast.Name, binding, use: ast.AST) -> None:
    name = optimizer.qualname.rsplit(".", 1)[-1]
    value = binding.value
    source = ctx.segment(value) or ast.unparse(value)
    fix = Fix(f"Store a list: `{params.id} = list({ctx.text(value)})`", (ctx.replace(value, f"list({source})"),))
    ctx.report(
        "GS103",
        params,
        f"`{params.id}` is a generator (`{ctx.text(value)}`, line {ctx.line_of(binding.node)}) that line "
        f"{ctx.line_of(use)} already iterated, so {name} receives nothing or only what is left of it: those "
        f"parameters are never trained (an empty list raises \"optimizer got an empty parameter list\"); write "
        f"`{params.id} = list({ctx.text(value)})` to reuse it",
        related=(
            ctx.related(use, f"`{params.id}` is iterated here"),
            ctx.related(binding.node, f"`{params.id}` is a one-shot generator made here"),
        ),
        fix=fix,
    )


# GS104 stale-optimizer

# Calls that return a new model object with new parameter tensors.
_NEW_OBJECT_CALLS = frozenset(
    {"torch.load", "torch.jit.load", "pickle.load", "pickle.loads", "dill.load", "joblib.load", "copy.deepcopy", "torch.hub.load", "timm.create_model"}
)


@after_walk
def check_stale_optimizer(ctx: Context) -> None:
    training = loops.training_model(ctx)
    for optimizer in _facts(ctx).optimizers:
        params = _params_argument(optimizer.call)
        if params is None or optimizer.target is None:
            continue
        models = loops.parameter_roots(ctx, params)
        for model_name in sorted(models or ()):
            rebinding = _later_rebinding(ctx, optimizer, model_name)
            if rebinding is None:
                continue
            step = _step_after(ctx, training, optimizer, rebinding)
            if step is not None:
                _report_stale(ctx, optimizer, model_name, rebinding, step)
                break


def _later_rebinding(ctx: Context, optimizer: _OptimizerCall, model_name: str) -> ast.Assign | None:
    """Return the first assignment after the optimizer call that binds `model_name` to a new model object.

    Only assignments before the optimizer variable is next rebound count: after that the
    optimizer in use is a new one.
    """
    call = optimizer.call
    position = (call.lineno, call.col_offset)
    function = ctx.model.enclosing_function(call)
    limit = min(
        ((b.node.lineno, b.node.col_offset) for b in ctx.model.lookup(optimizer.target, call) if (b.node.lineno, b.node.col_offset) > position),  # type: ignore[arg-type, attr-defined]
        default=(float("inf"), 0),
    )
    later = []
    for binding in ctx.model.lookup(model_name, call):
        node = binding.node
        if binding.kind != "assign" or binding.index or not isinstance(node, ast.Assign):
            continue
        if not position < (node.lineno, node.col_offset) < limit or ctx.model.enclosing_function(node) is not function:
            continue
        later.append(node)
    for node in sorted(later, key=lambda node: (node.lineno, node.col_offset)):
        if _is_new_model(ctx, node.value, model_name):
            return node
    return None


def _is_new_model(ctx: Context, value: ast.expr, model_name: str) -> bool:
    if not isinstance(value, ast.Call):
        return False
    qualname = ctx.model.call_qualname(value)
    passes_model = any(isinstance(node, ast.Name) and node.id == model_name for arg in value.args for node in ast.walk(arg))
    if qualname in ("copy.deepcopy", "copy.copy"):
        return True
    if passes_model:
        return False  # Wrappers such as DDP(model), torch.compile(model) or get_peft_model(model) keep its tensors.
    if qualname in _NEW_OBJECT_CALLS or (qualname is not None and torch_api.is_module_constructor(qualname)):
        return True
    if isinstance(value.func, ast.Attribute) and qualname is None:
        return False  # `model = model.to(device)`, `model = other.half()`: not known to be new.
    return ctx.kinds.is_module(value)


def _step_after(ctx: Context, training: loops.TrainingModel, optimizer: _OptimizerCall, rebinding: ast.Assign) -> ast.AST | None:
    """Return a step of the optimizer that runs after the rebinding, with the optimizer not rebuilt in between."""
    name = optimizer.target
    function = ctx.model.enclosing_function(rebinding)
    root = function if function is not None else ctx.tree
    later_builds = [
        binding.node.lineno  # type: ignore[attr-defined]
        for binding in ctx.model.lookup(name, rebinding)  # type: ignore[arg-type]
        if binding.node.lineno > rebinding.lineno and ctx.model.enclosing_function(binding.node) is function  # type: ignore[attr-defined]
    ]
    for step_root, event in training.steps_by_target.get(name, ()):  # type: ignore[arg-type]
        line = ctx.line_of(event.report_node)
        if step_root is root and line > rebinding.lineno and not any(build <= line for build in later_builds):
            return event.report_node
    return None


def _report_stale(ctx: Context, optimizer: _OptimizerCall, model_name: str, rebinding: ast.Assign, step: ast.AST) -> None:
    maker = ctx.text(rebinding.value.func)  # type: ignore[attr-defined]
    ctx.report(
        "GS104",
        rebinding,
        f"`{model_name}` is replaced by a new object from `{maker}(...)` after `{optimizer.target}` (line "
        f"{ctx.line_of(optimizer.call)}) was built over the old model's parameters: `{ctx.text(step)}` keeps "
        f"updating the old tensors and the `{model_name}` being trained never changes; build the optimizer after "
        f"this line, or load the weights in place with `{model_name}.load_state_dict(...)`",
        related=(
            ctx.related(optimizer.call, "the optimizer is built over the old model's parameters here"),
            ctx.related(step, "this step updates the old parameters"),
        ),
    )


# GS105 bad-hyperparameter

# Positions of momentum, betas and weight_decay in each optimizer's signature (torch 2.x).
_POSITIONS = {
    "torch.optim.SGD": {"momentum": 2, "weight_decay": 4},
    "torch.optim.Adam": {"betas": 2, "weight_decay": 4},
    "torch.optim.AdamW": {"betas": 2, "weight_decay": 4},
    "torch.optim.NAdam": {"betas": 2, "weight_decay": 4},
    "torch.optim.RAdam": {"betas": 2, "weight_decay": 4},
    "torch.optim.Adamax": {"betas": 2, "weight_decay": 4},
    "torch.optim.RMSprop": {"weight_decay": 4, "momentum": 5},
    "torch.optim.Adagrad": {"weight_decay": 3},
    "torch.optim.ASGD": {"weight_decay": 5},
    "torch.optim.Adadelta": {"weight_decay": 4},
}
# Optimizers whose weight decay is decoupled from the gradient (applied to the weights directly).
_DECOUPLED = frozenset({"torch.optim.AdamW"})


@after_walk
def check_hyperparameters(ctx: Context) -> None:
    for optimizer in _facts(ctx).optimizers:
        positions = _POSITIONS.get(optimizer.qualname, {})
        for name in ("momentum", "betas", "weight_decay"):
            node = next((k.value for k in optimizer.call.keywords if k.arg == name), None)
            position = positions.get(name)
            if node is None and position is not None and len(optimizer.call.args) > position:
                node = optimizer.call.args[position]
            report_node: ast.AST | None = node
            unpacked = ctx.values.unpacked_keyword(optimizer.call, name) if node is None else None
            if unpacked is not None:
                report_node, node = unpacked  # reported at `**config`, related to the value in the dict
            if node is None or report_node is None:
                continue
            resolved = ctx.values.resolve(node)
            if resolved is None:
                continue
            _check_hyperparameter(ctx, optimizer, name, report_node, resolved)


def _check_hyperparameter(ctx: Context, optimizer: _OptimizerCall, name: str, node: ast.AST, resolved: Resolved) -> None:
    optimizer_name = optimizer.qualname.rsplit(".", 1)[-1]
    related = ()
    if ctx.line_of(resolved.origin) != ctx.line_of(node):
        related = (ctx.related(resolved.origin, f"{name} is set here"),)
    value = resolved.value
    if name == "betas" and isinstance(value, (tuple, list)):
        for index, beta in enumerate(value[:2]):
            if _is_number(beta) and not 0 <= beta < 1:
                ctx.report(
                    "GS105",
                    node,
                    f"beta{index + 1} {format_number(beta)} of {optimizer_name} is outside [0, 1): the moving averages of the "
                    f"gradient {'never forget old values' if beta >= 1 else 'flip sign every step'}, and torch raises "
                    f"\"Invalid beta parameter\"; typical betas are (0.9, 0.999)",
                    related=related,
                )
        return
    if not _is_number(value):
        return
    if name == "momentum" and not 0 <= value < 1:
        effect = (
            "the velocity never decays, so updates grow without bound and the loss diverges"
            if value >= 1
            else "torch raises \"Invalid momentum value\""
        )
        ctx.report(
            "GS105",
            node,
            f"momentum {format_number(value)} of {optimizer_name} is outside [0, 1): {effect}; typical momentum is 0.9",
            related=related,
        )
    elif name == "weight_decay":
        _check_weight_decay(ctx, optimizer, node, float(value), related)


def _check_weight_decay(ctx: Context, optimizer: _OptimizerCall, node: ast.AST, value: float, related: tuple) -> None:
    optimizer_name = optimizer.qualname.rsplit(".", 1)[-1]
    thresholds = ctx.thresholds
    decoupled = optimizer.qualname in _DECOUPLED or any(
        k.arg == "decoupled_weight_decay" and isinstance(k.value, ast.Constant) and k.value.value is True for k in optimizer.call.keywords
    )
    if value >= thresholds.weight_decay_max:
        ctx.report(
            "GS105",
            node,
            f"weight decay {format_number(value)} of {optimizer_name} is so large that it pulls every weight towards zero "
            f"faster than the gradients can move it: the model cannot fit the data; typical values are 1e-4 to 0.1",
            related=related,
        )
    elif not decoupled and value >= thresholds.coupled_weight_decay_max:
        ctx.report(
            "GS105",
            node,
            f"weight decay {format_number(value)} of {optimizer_name} is added to the gradient as an L2 penalty, and at "
            f"this size it outweighs the loss gradient and shrinks the weights towards zero; typical values for "
            f"{optimizer_name} are 1e-5 to 1e-3, or use AdamW, whose decoupled weight decay works at 0.01 to 0.3",
            related=related,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# GS106 lr-schedule-zero

# Schedulers whose `gamma` multiplies the lr (argument positions in torch 2.x).
_GAMMA_POSITION = {
    "torch.optim.lr_scheduler.StepLR": 2,
    "torch.optim.lr_scheduler.MultiStepLR": 2,
    "torch.optim.lr_scheduler.ExponentialLR": 1,
}


@after_walk
def check_zero_schedules(ctx: Context) -> None:
    for call, qualname in _facts(ctx).schedulers:
        name = qualname.rsplit(".", 1)[-1]
        if qualname in _GAMMA_POSITION:
            _check_factor(ctx, call, name, "gamma", _GAMMA_POSITION[qualname], "multiplies the learning rate by 0 at its first decay")
        elif qualname == "torch.optim.lr_scheduler.ConstantLR":
            _check_factor(ctx, call, name, "factor", 1, "sets the learning rate to 0 for its first `total_iters` steps")
        elif qualname == "torch.optim.lr_scheduler.LambdaLR":
            _check_lambda_at_start(ctx, call)
        elif qualname == "torch.optim.lr_scheduler.MultiplicativeLR":
            _check_multiplicative(ctx, call)


def _argument(call: ast.Call, name: str, position: int) -> ast.expr | None:
    node = next((k.value for k in call.keywords if k.arg == name), None)
    if node is None and len(call.args) > position:
        node = call.args[position]
    return node


def _check_factor(ctx: Context, call: ast.Call, scheduler: str, name: str, position: int, effect: str) -> None:
    node = _argument(call, name, position)
    resolved = ctx.values.number(node)
    if node is None or resolved is None or resolved.value != 0:
        return
    ctx.report(
        "GS106",
        node,
        f"{scheduler} with {name}=0 {effect}: from then on every step changes nothing and training stops; "
        f"typical values of {name} are 0.1 to 0.5 (0.9 to 0.99 for ExponentialLR)",
    )


def _check_lambda_at_start(ctx: Context, call: ast.Call) -> None:
    function = _argument(call, "lr_lambda", 1)
    if function is None:
        return
    factor = schedule_factor(ctx, function, 0)
    if factor is None or factor != 0:
        return
    if all(schedule_factor(ctx, function, step) == 0 for step in _SAMPLE_STEPS):
        # LambdaLR applies the factor for step 0 when it is built, so how it is stepped does not matter.
        ctx.report(
            "GS106",
            function,
            f"the LambdaLR factor `{ctx.text(function)}` is 0 at every step: LambdaLR sets the learning rate to the "
            f"initial lr times this factor from the start, so the learning rate stays 0 and the parameters never "
            f"change; return a positive factor (1.0 keeps the initial learning rate)",
        )
        return
    assigned = _assigned_name(ctx, call)
    step = _per_epoch_step(ctx, assigned) if assigned is not None else None
    if step is None:
        return  # Stepped per batch (warmup) or not found: one batch at lr 0 is harmless.
    ctx.report(
        "GS106",
        function,
        f"the LambdaLR factor `{ctx.text(function)}` is 0 at step 0 and `{ctx.text(step)}` runs once per epoch: the whole "
        f"first epoch trains at learning rate 0; start the warmup above zero, such as `(epoch + 1) / warmup`, or step "
        f"the scheduler after every batch",
        related=(ctx.related(step, "the scheduler steps once per epoch here"),),
    )


# Steps at which a LambdaLR factor is evaluated to tell that it is 0 throughout training.
_SAMPLE_STEPS = (1, 2, 3, 5, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def _check_multiplicative(ctx: Context, call: ast.Call) -> None:
    function = _argument(call, "lr_lambda", 1)
    if function is None or schedule_factor(ctx, function, 1) != 0:
        return
    ctx.report(
        "GS106",
        function,
        f"the MultiplicativeLR factor `{ctx.text(function)}` is 0: the first scheduler step multiplies the learning "
        f"rate by 0 and training stops; a decay factor is a number just below 1, such as 0.95",
    )


def _per_epoch_step(ctx: Context, scheduler: str) -> ast.AST | None:
    """Return a `scheduler.step()` that runs in an epoch loop, outside the loop over batches."""
    training = loops.training_model(ctx)
    for sequence in training.sequences():
        if sequence.loop is None:
            continue
        nested_training = any(
            event.kind in (loops.BACKWARD, loops.STEP) and sequence.inner_loop(event, training.training_loops) is not None
            for event in sequence.events
        )
        if not nested_training:
            continue
        for event in sequence.events:
            if event.kind == loops.SCHEDULER_STEP and event.target == scheduler:
                if sequence.inner_loop(event, training.training_loops) is None:
                    return event.report_node
    return None


def schedule_factor(ctx: Context, function: ast.expr, step: int) -> float | None:
    """Return the value of a lambda (or a one-expression function) at `step`, or None if it cannot be computed."""
    if isinstance(function, ast.Name):
        bindings = ctx.model.lookup(function.id, function)
        if len(bindings) != 1:
            return None
        if bindings[0].kind == "assign" and isinstance(bindings[0].value, ast.Lambda):
            function = bindings[0].value
        elif bindings[0].kind == "def":
            definition = bindings[0].node
            body = [s for s in definition.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]  # type: ignore[attr-defined]
            arguments = definition.args.args  # type: ignore[attr-defined]
            if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None or len(arguments) != 1:
                return None
            return _evaluate(ctx, body[0].value, {arguments[0].arg: step})
        else:
            return None
    if isinstance(function, ast.Lambda) and len(function.args.args) == 1:
        return _evaluate(ctx, function.body, {function.args.args[0].arg: step})
    return None


_COMPARISONS = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b if abs(b) < 100 else None,
}


def _evaluate(ctx: Context, expr: ast.AST, names: dict[str, float]) -> float | None:
    """Evaluate a small arithmetic expression of the step number; None for anything else."""
    try:
        return _evaluate_or_raise(ctx, expr, names)
    except (ArithmeticError, TypeError, ValueError, LookupError):
        return None


def _evaluate_or_raise(ctx: Context, expr: ast.AST, names: dict[str, float]) -> float:
    if isinstance(expr, ast.Constant) and _is_number(expr.value):
        return expr.value  # type: ignore[return-value]
    if isinstance(expr, ast.Name) and expr.id in names:
        return names[expr.id]
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
        return -_evaluate_or_raise(ctx, expr.operand, names)
    if isinstance(expr, ast.BinOp) and type(expr.op) in _OPERATORS:
        result = _OPERATORS[type(expr.op)](_evaluate_or_raise(ctx, expr.left, names), _evaluate_or_raise(ctx, expr.right, names))
        if result is None:
            raise ValueError
        return result
    if isinstance(expr, ast.IfExp):
        branch = expr.body if _evaluate_or_raise(ctx, expr.test, names) else expr.orelse
        return _evaluate_or_raise(ctx, branch, names)
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1 and type(expr.ops[0]) in _COMPARISONS:
        left = _evaluate_or_raise(ctx, expr.left, names)
        right = _evaluate_or_raise(ctx, expr.comparators[0], names)
        return float(_COMPARISONS[type(expr.ops[0])](left, right))
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in ("min", "max", "float", "int") and not expr.keywords:
        values = [_evaluate_or_raise(ctx, arg, names) for arg in expr.args]
        if expr.func.id == "float" and len(values) == 1:
            return float(values[0])
        if expr.func.id == "int" and len(values) == 1:
            return int(values[0])
        if len(values) >= 2:
            return min(values) if expr.func.id == "min" else max(values)
    if isinstance(expr, ast.Call) and len(expr.args) == 1 and not expr.keywords:
        qualname = ctx.model.call_qualname(expr)
        if qualname in ("math.cos", "math.sin", "math.exp", "math.sqrt", "numpy.cos", "numpy.sin", "numpy.exp", "numpy.sqrt"):
            function = getattr(math, qualname.rsplit(".", 1)[-1])
            return function(_evaluate_or_raise(ctx, expr.args[0], names))
    if isinstance(expr, (ast.Attribute, ast.Name)):
        qualname = ctx.model.qualname(expr)
        if qualname in ("math.pi", "numpy.pi"):
            return math.pi
        resolved = ctx.values.number(expr)
        if resolved is not None:
            return resolved.value  # type: ignore[return-value]
    raise ValueError


# GS107 tiny-grad-clip

# The argument that sets the maximum, by clipping function or method name, with its position.
_CLIP_ARGUMENTS = {
    "clip_grad_norm_": ("max_norm", 1),
    "clip_grad_norm": ("max_norm", 1),
    "clip_grad_value_": ("clip_value", 1),
}


@after_walk
def check_gradient_clipping(ctx: Context) -> None:
    # The training-loop engine gathers calls by name during the walk, clipping calls among them.
    for call in loops.collected_calls(ctx):
        _check_clip_call(ctx, call)


def _check_clip_call(ctx: Context, call: ast.Call) -> None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id  # type: ignore[attr-defined]
    if name in _CLIP_ARGUMENTS:
        keyword, position = _CLIP_ARGUMENTS[name]
        _check_clip_value(ctx, name, keyword, _argument(call, keyword, position))
    elif name == "clip_gradients":  # Fabric and LightningModule.
        for keyword in ("max_norm", "clip_val", "gradient_clip_val"):
            _check_clip_value(ctx, name, keyword, next((k.value for k in call.keywords if k.arg == keyword), None))
    elif name == "Trainer":  # Lightning's Trainer(gradient_clip_val=...).
        _check_clip_value(ctx, name, "gradient_clip_val", next((k.value for k in call.keywords if k.arg == "gradient_clip_val"), None))


def _check_clip_value(ctx: Context, function: str, keyword: str, node: ast.expr | None) -> None:
    resolved = ctx.values.number(node)
    if node is None or resolved is None:
        return
    value = float(resolved.value)  # type: ignore[arg-type]
    if value > ctx.thresholds.grad_clip_min or (value == 0 and function == "Trainer"):
        return  # Lightning reads gradient_clip_val=0 as "no clipping".
    related = ()
    if ctx.line_of(resolved.origin) != ctx.line_of(node):
        related = (ctx.related(resolved.origin, f"{keyword} is set here"),)
    if value <= 0:
        effect = "sets every gradient to zero, so nothing trains"
    elif "value" in keyword or keyword == "clip_val":
        effect = f"caps every gradient element at ±{format_number(value)}, so the updates are tiny and the parameters barely change"
    else:
        effect = f"scales the whole gradient down to a norm of {format_number(value)}, so the updates are tiny and the parameters barely change"
    ctx.report(
        "GS107",
        node,
        f"{keyword} {format_number(value)} in {function} {effect}; typical values are 0.1 to 10 (1.0 is a common default)",
        related=related,
    )


# GS108 optimizer-in-loop


@after_walk
def check_optimizer_in_loop(ctx: Context) -> None:
    optimizers = _facts(ctx).optimizers
    if not optimizers:
        return
    training = loops.training_model(ctx)
    sequences = {sequence.loop: sequence for sequence in training.sequences() if sequence.loop is not None}
    # Each optimizer built in place, with no construction site elsewhere, then each call of a factory that builds one.
    built: list[tuple[_OptimizerCall, ast.Call | None]] = [(optimizer, None) for optimizer in optimizers]
    built.extend(_factory_calls(ctx, training, optimizers))
    for optimizer, construction in built:
        loop = _innermost_loop(ctx, optimizer.call)
        sequence = sequences.get(loop) if loop is not None else None
        if sequence is None or optimizer.target is None:
            continue
        steps = [
            event
            for event in sequence.events
            if event.kind == loops.STEP
            and event.target == optimizer.target
            and sequence.inner_loop(event, training.training_loops) is None
        ]
        if not steps or _builds_model(ctx, loop):
            continue
        name = optimizer.qualname.rsplit(".", 1)[-1]
        related = [ctx.related(steps[0].report_node, "the optimizer steps here, in the same iteration")]
        factory_note = ""
        if construction is not None:
            factory_note = f" by `{ctx.text(optimizer.call.func)}()`, which builds a new {name} (line {construction.lineno})"
            related.insert(0, ctx.related(construction, f"a new {name} is built here on every call"))
        ctx.report(
            "GS108",
            optimizer.call,
            f"`{optimizer.target}` is built again on every iteration of the training loop (line {loop.lineno}){factory_note}: each "
            f"new {name} starts with empty state (momentum buffers, Adam moments, step counts), so it never builds up "
            f"momentum or adapts its step sizes, and a scheduler attached to the first one no longer acts; build the "
            f"optimizer once, before the loop",
            related=tuple(related),
        )


def _factory_calls(
    ctx: Context, training: loops.TrainingModel, optimizers: list[_OptimizerCall]
) -> list[tuple[_OptimizerCall, ast.Call]]:
    """Return the calls of functions of this file that return a newly built optimizer (`opt = make_opt(model)`).

    Each call is paired with the optimizer construction inside the function.
    """
    found = []
    for optimizer in optimizers:
        function = ctx.model.enclosing_function(optimizer.call)
        if function is None or not _returns_result(ctx, function, optimizer.call):
            continue
        for call in ctx.model.calls_named(function.name):
            if training.callee(call) is function:
                found.append((_OptimizerCall(call, optimizer.qualname, _assigned_name(ctx, call)), optimizer.call))
    return found


def _returns_result(ctx: Context, function: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call) -> bool:
    """Tell whether `function` returns the object `call` builds: `return Adam(...)`, or `opt = Adam(...)` then `return opt`."""
    parent = ctx.model.parent(call)
    if isinstance(parent, ast.Return):
        return ctx.model.scope_of(parent).node is function
    if not (isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name)):
        return False
    name = parent.targets[0].id
    bindings = ctx.model.lookup(name, parent)
    if len(bindings) != 1 or bindings[0].scope.node is not function:
        return False  # A name rebound or kept outside the function (a cached optimizer) may outlive one call.
    return any(
        isinstance(node, ast.Return) and isinstance(node.value, ast.Name) and node.value.id == name and ctx.model.scope_of(node).node is function
        for node in ctx.model.subtree(function)
    )


def _innermost_loop(ctx: Context, node: ast.AST) -> ast.AST | None:
    """Return the loop whose body runs `node` on every iteration, or None when a condition or a function is in between."""
    child = node
    for ancestor in ctx.model.ancestors(node):
        if isinstance(ancestor, (ast.For, ast.AsyncFor, ast.While)) and any(s is child for s in ancestor.body):
            return ancestor
        if isinstance(ancestor, (ast.If, ast.IfExp, ast.Try, ast.ExceptHandler, ast.Match, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return None
        child = ancestor
    return None


def _builds_model(ctx: Context, loop: ast.AST) -> bool:
    """Tell whether the loop body builds or loads a model: a loop over runs, folds or experiments."""
    for node in ast.walk(loop):
        if not isinstance(node, ast.Call):
            continue
        qualname = ctx.model.call_qualname(node)
        if qualname in _NEW_OBJECT_CALLS:
            return True
        if qualname is not None and qualname.endswith("Loss"):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in torch_api.MODULE_RETURNING_METHODS:
            continue
        if qualname in torch_api.MODULE_WRAPPERS:
            continue
        if ctx.kinds.is_module(node):
            return True
    return False
