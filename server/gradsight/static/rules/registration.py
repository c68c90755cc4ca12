"""GS3: module registration.

An nn.Module finds its parameters through the attributes it was given: `nn.Module.__setattr__`
registers a value when it is an nn.Module or an nn.Parameter, and `register_buffer` registers a
tensor. Anything else is a plain Python attribute that `parameters()`, `.to()` and
`state_dict()` never see.

GS301 unregistered-submodules reports modules kept in a plain list, tuple or dict attribute.
GS302 unregistered-tensor reports tensor attributes set in `__init__` that are neither
parameters nor buffers. GS303 layer-in-forward reports layers and parameters built inside
`forward`, which get new random weights on every call.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradsight.findings import Fix, Severity
from gradsight.static import torch_api
from gradsight.static.flow import flow_of
from gradsight.static.registry import after_walk, on

if TYPE_CHECKING:
    from gradsight.static.context import Context

# Methods of a plain list or dict that nn.ModuleList / nn.ModuleDict also have.
_MODULE_LIST_METHODS = frozenset({"append", "extend", "insert", "pop"})
_MODULE_DICT_METHODS = frozenset({"items", "keys", "values", "pop", "update", "clear"})
_REGISTERING_CALLS = frozenset({"add_module", "register_module", "register_buffer", "register_parameter"})


@dataclass
class _Attribute:
    """The uses of one `self.<name>` attribute in a module class."""

    assignments: list[ast.Assign | ast.AnnAssign] = field(default_factory=list)
    additions: list[tuple[ast.AST, ast.expr]] = field(default_factory=list)  # (statement, value added)
    methods_used: set[str] = field(default_factory=set)
    registered: bool = False
    requires_grad_set: bool = False


def _attributes(ctx: Context, owner: ast.ClassDef) -> tuple[dict[str, _Attribute], bool]:
    """Return the class's `self.<name>` attributes, and whether it registers modules by name (`add_module`, `setattr`)."""
    cache = ctx.state.setdefault("GS3 classes", {})
    if owner in cache:
        return cache[owner]
    found: dict[str, _Attribute] = {}
    registers_by_name = False

    def entry(name: str) -> _Attribute:
        return found.setdefault(name, _Attribute())

    for node in ctx.model.subtree(owner):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = _self_name(target)
                if name is not None:
                    entry(name).assignments.append(node)
                elif isinstance(target, ast.Subscript) and _self_name(target.value):
                    entry(_self_name(target.value)).additions.append((node, node.value))  # type: ignore[arg-type]
                elif isinstance(target, ast.Attribute) and target.attr == "requires_grad" and _self_name(target.value):
                    entry(_self_name(target.value)).requires_grad_set = True  # type: ignore[arg-type]
        elif isinstance(node, ast.AugAssign) and _self_name(node.target):
            entry(_self_name(node.target)).additions.append((node, node.value))  # type: ignore[arg-type]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "setattr" and node.args and _is_self(node.args[0]):
                registers_by_name = True
            if not isinstance(func, ast.Attribute):
                continue
            if _is_self(func.value) and func.attr in _REGISTERING_CALLS:
                if func.attr in ("add_module", "register_module"):
                    registers_by_name = True
                elif node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    entry(node.args[0].value).registered = True
            name = _self_name(func.value)
            if name is not None:
                entry(name).methods_used.add(func.attr)
                if func.attr in ("append", "extend", "insert") and node.args:
                    entry(name).additions.append((node, node.args[-1]))
                if func.attr == "requires_grad_" and (not node.args or _is_true(node.args[0])):
                    entry(name).requires_grad_set = True
    cache[owner] = (found, registers_by_name)
    return cache[owner]


def _self_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and _is_self(node.value):
        return node.attr
    return None


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _is_true(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _module_classes(ctx: Context) -> list[ast.ClassDef]:
    return [owner for classes in ctx.model.classes.values() for owner in classes if ctx.kinds.is_module_class(owner)]


def nn_alias(ctx: Context) -> str | None:
    """Return how this file can spell `torch.nn` (`nn`, `torch.nn`), or None when it imports neither."""
    names = ctx.model.module_scope.bindings
    for name, bindings in names.items():
        if len(bindings) == 1 and bindings[0].kind == "import" and bindings[0].qualname == "torch.nn":
            return name
    torch_bindings = names.get("torch", [])
    if len(torch_bindings) == 1 and torch_bindings[0].kind == "import" and torch_bindings[0].qualname == "torch":
        return "torch.nn"
    return None


# GS301


@after_walk
def check_unregistered_submodules(ctx: Context) -> None:
    for owner in _module_classes(ctx):
        attributes, registers_by_name = _attributes(ctx, owner)
        if registers_by_name:
            continue  # modules kept in a list may be registered one by one under other names
        for name, attribute in attributes.items():
            _check_container_attribute(ctx, owner, name, attribute)


def _check_container_attribute(ctx: Context, owner: ast.ClassDef, name: str, attribute: _Attribute) -> None:
    if attribute.registered or not attribute.assignments:
        return
    containers = []
    for assignment in attribute.assignments:
        container = _container_type(ctx, assignment.value)  # type: ignore[arg-type]
        if container is None:
            return  # also assigned something else (an nn.ModuleList, None): not a plain container attribute
        containers.append((assignment, container))
    elements = [(assignment, element) for assignment, _ in containers for element in _elements(ctx, assignment.value)]  # type: ignore[arg-type]
    elements += [(statement, element) for statement, added in attribute.additions for element in _added_elements(added)]
    kinds = [(_element_kind(ctx, element), statement, element) for statement, element in elements]
    evidence = [(statement, element) for kind, statement, element in kinds if kind == "trainable"]
    if not evidence:
        return

    # A module container rejects other values, so the fix is certain only when every element is a module.
    unknown = any(kind in ("other", "unknown") for kind, _, _ in kinds)
    assignment, container = containers[0]
    wrapper = "nn.ModuleDict" if container == "dict" else "nn.ModuleList"
    example = ctx.text(evidence[0][1])
    related = ()
    if evidence[0][0] is not assignment:
        related = (ctx.related(evidence[0][0], f"a module is added to `self.{name}` here"),)
    ctx.report(
        "GS301",
        assignment,
        f"`self.{name}` is a plain {container} holding modules such as `{example}`: nn.Module does not register "
        f"modules inside a {container}, so their parameters are missing from `{owner.name}.parameters()` (the optimizer "
        f"never updates them), `.to(device)` does not move them and `state_dict()` does not save them; "
        f"use `{wrapper}`",
        related=related,
        fix=_container_fix(ctx, assignment, container, attribute, unknown),
    )


def _container_type(ctx: Context, value: ast.expr) -> str | None:
    if isinstance(value, (ast.List, ast.ListComp)):
        return "list"
    if isinstance(value, ast.Tuple):
        return "tuple"
    if isinstance(value, (ast.Dict, ast.DictComp)):
        return "dict"
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ("list", "dict", "tuple"):
        if not ctx.model.lookup(value.func.id, value.func):
            return value.func.id
    if isinstance(value, ast.Name):
        bindings = ctx.model.lookup(value.id, value)
        if len(bindings) == 1 and bindings[0].kind == "assign" and bindings[0].value is not None and not bindings[0].index:
            inner = bindings[0].value
            if isinstance(inner, (ast.List, ast.ListComp)) or (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id == "list"):
                return "list"
    return None


def _elements(ctx: Context, value: ast.expr) -> list[ast.expr]:
    """Return the expressions a container literal (or a local list it was built in) holds."""
    if isinstance(value, (ast.List, ast.Tuple)):
        return [element.value if isinstance(element, ast.Starred) else element for element in value.elts]
    if isinstance(value, ast.Dict):
        return list(value.values)
    if isinstance(value, (ast.ListComp, ast.GeneratorExp)):
        return [value.elt]
    if isinstance(value, ast.DictComp):
        return [value.value]
    if isinstance(value, ast.Call) and value.args:
        return _elements(ctx, value.args[0])
    if isinstance(value, ast.Name):
        bindings = ctx.model.lookup(value.id, value)
        if len(bindings) == 1 and bindings[0].value is not None:
            scope = bindings[0].scope.node
            added = flow_of(ctx).list_additions(scope).get(value.id, [])
            return _elements(ctx, bindings[0].value) + [e for item in added for e in _added_elements(item)]
    return []


def _added_elements(added: ast.expr) -> list[ast.expr]:
    if isinstance(added, (ast.List, ast.Tuple)):
        return list(added.elts)
    if isinstance(added, (ast.ListComp, ast.GeneratorExp)):
        return [added.elt]
    return [added]


def _element_kind(ctx: Context, element: ast.expr) -> str:
    """Classify a container element: "trainable" (a new module with parameters), "module", "other" or "unknown".

    A module stored elsewhere on `self` (`[self.conv1, self.conv2]`) is already registered, and a
    module without parameters (`nn.ReLU()`) loses nothing by not being registered.
    """
    if isinstance(element, ast.Constant):
        return "other"
    if _self_name(element) is not None:
        return "module" if ctx.kinds.is_module(element) else "unknown"
    kind = ctx.kinds.kind(element)
    if kind is None:
        return "unknown"
    if not kind.is_module:
        return "other"
    return "module" if kind.qualname in torch_api.PARAMETER_FREE_MODULES else "trainable"


def _container_fix(ctx: Context, assignment: ast.AST, container: str, attribute: _Attribute, unknown: bool) -> Fix | None:
    alias = nn_alias(ctx)
    value = assignment.value  # type: ignore[attr-defined]
    if alias is None:
        return None
    if container == "dict":
        wrapper = f"{alias}.ModuleDict"
        supported = _MODULE_DICT_METHODS
        if isinstance(value, ast.Dict) and not all(isinstance(k, ast.Constant) and isinstance(k.value, str) and "." not in k.value for k in value.keys):
            return None  # ModuleDict keys must be strings without dots
    else:
        wrapper = f"{alias}.ModuleList"
        supported = _MODULE_LIST_METHODS
    if isinstance(value, (ast.List, ast.Dict, ast.Tuple)) and not getattr(value, "elts", getattr(value, "keys", None)):
        new_text = f"{wrapper}()"
    elif isinstance(value, ast.Call) and not value.args and not value.keywords:
        new_text = f"{wrapper}()"
    else:
        text = ctx.segment(value)
        if not text:
            return None
        new_text = f"{wrapper}({text})"
    # The fix is safe when every element is known to be a module and the attribute is used only in
    # ways the module container supports (indexing, iteration, len and the methods listed above).
    safe = not unknown and attribute.methods_used <= supported and not isinstance(value, ast.DictComp)
    return Fix(f"Wrap in `{wrapper}`", (ctx.replace(value, new_text),), safe=safe)


# GS302


@on(ast.Assign)
def check_unregistered_tensor(ctx: Context, node: ast.Assign) -> None:
    if len(node.targets) != 1:
        return
    name = _self_name(node.targets[0])
    if name is None:
        return
    function = ctx.model.enclosing_function(node)
    if function is None or function.name != "__init__":
        return  # tensors set in forward or other methods are often per-call caches
    owner = ctx.model.enclosing_class(node)
    if owner is None or ctx.model.parent(function) is not owner or not ctx.kinds.is_module_class(owner):
        return
    chain = _tensor_chain(ctx, node.value)
    if chain is None:
        return

    attributes, _ = _attributes(ctx, owner)
    attribute = attributes.get(name, _Attribute())
    if attribute.registered or any(_is_registered_value(ctx, a.value) for a in attribute.assignments):  # type: ignore[arg-type]
        return
    if _is_moved_leaf(ctx, node.value):
        return  # GS205 reports `torch.randn(..., requires_grad=True).to(device)`, which covers this case

    requires_grad = attribute.requires_grad_set or any(_requests_grad(ctx, call) for call in chain)
    text = ctx.segment(node.value) or ""
    if requires_grad:
        ctx.report(
            "GS302",
            node,
            f"`self.{name}` holds a tensor with requires_grad=True, but nn.Module does not register a plain tensor "
            f"attribute: it is missing from `{owner.name}.parameters()`, so the optimizer never updates it, "
            f"`.to(device)` does not move it and `state_dict()` does not save it; wrap it: "
            f"`self.{name} = nn.Parameter(...)`",
            fix=_parameter_fix(ctx, node, attribute, text),
        )
    else:
        ctx.report(
            "GS302",
            node,
            f"`self.{name}` is a plain tensor attribute, neither a parameter nor a buffer: `.to(device)` does not move "
            f"it (a device mismatch on GPU) and `state_dict()` does not save it; register it with "
            f'`self.register_buffer("{name}", ...)`, or wrap it in `nn.Parameter` if it should train',
            severity=Severity.INFORMATION,
            fix=_buffer_fix(ctx, node, name, text),
        )


def _tensor_chain(ctx: Context, value: ast.expr, depth: int = 0) -> list[ast.Call] | None:
    """Return the calls that build `value` as a fresh tensor (factories, in-place init, moves), or None."""
    if depth > 10:
        return None
    if isinstance(value, ast.BinOp):
        for side in (value.left, value.right):
            chain = _tensor_chain(ctx, side, depth + 1)
            if chain is not None:
                return chain
        return None
    if not isinstance(value, ast.Call):
        return None
    qualname = ctx.model.call_qualname(value)
    if qualname in torch_api.TENSOR_FACTORIES and not qualname.endswith("_like"):
        return [value]
    if qualname is not None and qualname.startswith("torch.") and not torch_api.is_module_constructor(qualname) and value.args:
        # `nn.init.normal_(torch.empty(...))`, `torch.tril(torch.ones(...))`: torch functions of a new tensor.
        inner = _tensor_chain(ctx, value.args[0], depth + 1)
        return None if inner is None else [*inner, value]
    func = value.func
    if qualname is None and isinstance(func, ast.Attribute) and func.attr not in _NON_TENSOR_METHODS:
        inner = _tensor_chain(ctx, func.value, depth + 1)
        return None if inner is None else [*inner, value]
    return None


# Tensor methods whose result is not a tensor.
_NON_TENSOR_METHODS = frozenset({"item", "tolist", "numpy", "size", "dim", "numel", "nelement", "element_size", "stride", "data_ptr", "get_device", "is_contiguous"})


def _requests_grad(ctx: Context, call: ast.Call) -> bool:
    if isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_":
        return not call.args or _is_true(call.args[0])
    flag = next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
    resolved = ctx.values.resolve(flag) if flag is not None else None
    return resolved is not None and resolved.value is True


def _is_registered_value(ctx: Context, value: ast.expr) -> bool:
    qualname = ctx.model.call_qualname(value) if isinstance(value, ast.Call) else None
    return qualname in ("torch.nn.Parameter", "torch.nn.Buffer", "torch.nn.UninitializedParameter", "torch.nn.UninitializedBuffer")


def _is_moved_leaf(ctx: Context, value: ast.expr) -> bool:
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in torch_api.MOVE_METHODS):
        return False
    receiver = value.func.value
    return isinstance(receiver, ast.Call) and any(_requests_grad(ctx, call) for call in (_tensor_chain(ctx, receiver) or []))


def _parameter_fix(ctx: Context, node: ast.Assign, attribute: _Attribute, text: str) -> Fix | None:
    alias = nn_alias(ctx)
    if alias is None or not text:
        return None
    # Assigning a plain tensor to a name registered as a parameter raises TypeError, so a second
    # assignment of the attribute elsewhere in the class makes the fix unsafe.
    safe = len(attribute.assignments) == 1
    return Fix(f"Wrap in `{alias}.Parameter`", (ctx.replace(node.value, f"{alias}.Parameter({text})"),), safe=safe)


def _buffer_fix(ctx: Context, node: ast.Assign, name: str, text: str) -> Fix | None:
    if not text or "\n" in text:
        return None
    # persistent=False keeps state_dict() unchanged, so existing checkpoints still load.
    return Fix(
        "Register as a buffer",
        (ctx.replace(node, f'self.register_buffer("{name}", {text}, persistent=False)'),),
    )


# GS303


@on(ast.Call)
def check_layer_in_forward(ctx: Context, call: ast.Call) -> None:
    qualname = ctx.model.call_qualname(call)
    if qualname is None and not isinstance(call.func, ast.Name):
        return
    if qualname is not None and qualname != "torch.nn.Parameter" and not torch_api.is_module_constructor(qualname):
        return
    function = ctx.model.enclosing_function(call)
    if function is None or function.name != "forward":
        return
    owner = ctx.model.enclosing_class(function)
    if owner is None or ctx.model.parent(function) is not owner or not ctx.kinds.is_module_class(owner):
        return
    if not _builds_parameters(ctx, call, qualname):
        return
    if _is_lazy_initialisation(ctx, call):
        return
    what = "a new parameter" if qualname == "torch.nn.Parameter" else "a new layer with randomly initialised weights"
    ctx.report(
        "GS303",
        call,
        f"`{ctx.text(call)}` builds {what} on every call of `{owner.name}.forward`: those weights are not in the "
        "optimizer, never train and change at each step, so the output is noise to the rest of the model; "
        "build it once in `__init__` (`self.layer = ...`) and use `self.layer` in forward",
    )


def _builds_parameters(ctx: Context, call: ast.Call, qualname: str | None) -> bool:
    if qualname == "torch.nn.Parameter":
        return True
    if qualname is None:
        kind = ctx.kinds.kind(call)
        if kind is None or kind.user_class is None:
            return False
        attributes, _ = _attributes(ctx, kind.user_class)
        for entry in attributes.values():
            for assignment in entry.assignments:
                value = assignment.value
                inner = ctx.model.call_qualname(value) if isinstance(value, ast.Call) else None
                if inner is not None and (inner == "torch.nn.Parameter" or torch_api.is_module_constructor(inner)):
                    if _builds_parameters(ctx, value, inner):  # type: ignore[arg-type]
                        return True
                elif isinstance(value, ast.Call) and inner is None and ctx.kinds.is_module(value):
                    return True  # another module class of this file: assume it has parameters
        return False
    if qualname in torch_api.PARAMETER_FREE_MODULES or (qualname.startswith("torch.nn.") and qualname.endswith("Loss")):
        return False
    if qualname in torch_api.MODULE_CONTAINERS:
        return False  # the layers inside the container get their own finding
    if qualname in torch_api.NORMALIZATION_AFFINE_FLAG:
        keyword, default = torch_api.NORMALIZATION_AFFINE_FLAG[qualname]
        flag = next((k.value for k in call.keywords if k.arg == keyword), None)
        if flag is None:
            return default
        resolved = ctx.values.resolve(flag)
        return resolved is None or resolved.value is True  # an unknown flag may be True
    return torch_api.is_module_constructor(qualname)


def _is_lazy_initialisation(ctx: Context, call: ast.Call) -> bool:
    """Tell whether the layer is stored on `self` under a condition (`if self.fc is None: self.fc = ...`)."""
    parent = ctx.model.parent(call)
    # `nn.Linear(...).to(x.device)`: the layer is moved before it is stored.
    while isinstance(parent, ast.Attribute) and isinstance(ctx.model.parent(parent), ast.Call):
        parent = ctx.model.parent(ctx.model.parent(parent))
    if not isinstance(parent, ast.Assign):
        return False
    if not any(_self_name(t) for t in parent.targets):
        # `layer = nn.Linear(...)` then `self.layer = layer` under the same condition.
        names = {t.id for t in parent.targets if isinstance(t, ast.Name)}
        block = ctx.model.parent(parent)
        stored = any(
            isinstance(node, ast.Assign)
            and any(isinstance(part, ast.Name) and part.id in names for part in ast.walk(node.value))
            and any(_self_name(t) for t in node.targets)
            for node in (ast.walk(block) if block is not None else ())
        )
        if not stored:
            return False
    for ancestor in ctx.model.ancestors(parent):
        if isinstance(ancestor, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return False
        if isinstance(ancestor, ast.If):
            return True
    return False
