"""Inference of the kind of object an expression evaluates to: an nn.Module, a parameter, a plain tensor, or unknown.

Rules use this to tell `model.fc.requires_grad = False` (a module: the assignment freezes
nothing) from `model.fc.weight.requires_grad = False` (a parameter: a real freeze).
The result is None (unknown) whenever the evidence is not certain.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from gradsight.static import torch_api
from gradsight.static.semantic import Binding, SemanticModel

_MAX_DEPTH = 25
# Calls on a module whose loop variable is a parameter (index 1 for the `named_*` pairs).
PARAMETER_ITERATORS = {"parameters": (), "named_parameters": (1,)}
MODULE_ITERATORS = {"modules": (), "children": (), "named_modules": (1,), "named_children": (1,)}


@dataclass(frozen=True)
class Kind:
    """The inferred kind of a value.

    `category` is "module", "parameter" or "tensor". For modules, `qualname` is the class when
    known (`torch.nn.Sequential`, `torchvision.models.vgg16`) and `user_class` the class
    statement when the module is defined in this file.
    """

    category: str
    qualname: str | None = None
    user_class: ast.ClassDef | None = None
    # For DataParallel-style wrappers: the kind of the model in `.module`.
    wrapped: Kind | None = None

    @property
    def is_module(self) -> bool:
        return self.category == "module"

    @property
    def is_container(self) -> bool:
        return self.is_module and (self.qualname in torch_api.MODULE_CONTAINERS or self.qualname == LIBRARY_SUBMODULE)


# The class of a library model's public submodule (`vgg.features`, `resnet.layer1`) is not known,
# but indexing one (`vgg.features[0]`) only makes sense on a container, and gives a module.
LIBRARY_SUBMODULE = "<library submodule>"

MODULE = Kind("module")
PARAMETER = Kind("parameter")
TENSOR = Kind("tensor")


class KindInference:
    def __init__(self, model: SemanticModel) -> None:
        self.model = model
        self._module_classes: dict[ast.ClassDef, bool] = {}
        self._active: set[int] = set()
        self._binding_kinds: dict[int, Kind | None] = {}
        self._returned_kinds: dict[ast.AST, Kind | None] = {}
        self._attribute_kinds: dict[tuple[ast.ClassDef, str], Kind | None] = {}
        # Results of top-level queries; inner ones depend on the bindings being inferred at the time.
        self._kinds: dict[ast.AST, Kind | None] = {}

    def kind(self, expr: ast.AST | None, depth: int = 0) -> Kind | None:
        if expr is None or depth > _MAX_DEPTH:
            return None
        if depth == 0 and not self._active:
            if expr not in self._kinds:
                self._kinds[expr] = self._kind(expr, depth)
            return self._kinds[expr]
        return self._kind(expr, depth)

    def _kind(self, expr: ast.AST, depth: int) -> Kind | None:
        if isinstance(expr, ast.Name):
            return self._name(expr, depth)
        if isinstance(expr, ast.Call):
            return self._call(expr, depth)
        if isinstance(expr, ast.Attribute):
            return self._attribute(expr, depth)
        if isinstance(expr, ast.Subscript):
            base = self.kind(expr.value, depth + 1)
            if base is None or not base.is_container:
                return None
            # A slice of nn.Sequential or nn.ModuleList is a container of the same class.
            return base if isinstance(expr.slice, ast.Slice) else MODULE
        return None

    def is_module(self, expr: ast.AST) -> bool:
        kind = self.kind(expr)
        return kind is not None and kind.is_module

    def is_module_class(self, node: ast.ClassDef, depth: int = 0) -> bool:
        """Tell whether a class defined in this file derives from nn.Module (directly or through other classes here)."""
        if node in self._module_classes:
            return self._module_classes[node]
        self._module_classes[node] = False  # Guards against cyclic bases while deciding.
        result = False
        for base in node.bases:
            qualname = self.model.qualname(base)
            if qualname in torch_api.MODULE_BASE_CLASSES:
                result = True
            elif isinstance(base, ast.Name) and depth < _MAX_DEPTH:
                bindings = self.model.lookup(base.id, base)
                if len(bindings) == 1 and bindings[0].kind == "class":
                    result = self.is_module_class(bindings[0].node, depth + 1)  # type: ignore[arg-type]
            if result:
                break
        self._module_classes[node] = result
        return result

    # Names

    def _name(self, expr: ast.Name, depth: int) -> Kind | None:
        if expr.id == "self":
            owner = self.model.enclosing_class(expr)
            if owner is not None and self.is_module_class(owner):
                return Kind("module", owner.name, owner)
            return None
        # A binding being inferred further up the stack (`model = model.to(device)`) adds nothing new.
        bindings = [b for b in self.model.lookup(expr.id, expr) if id(b) not in self._active]
        kinds = []
        for binding in bindings:
            # Memoised: without it, names bound from calls of functions that return other names
            # re-infer the same bindings again and again, which is exponential on large files.
            if id(binding) in self._binding_kinds:
                kinds.append(self._binding_kinds[id(binding)])
                continue
            self._active.add(id(binding))
            try:
                kind = self._binding(binding, depth + 1)
            finally:
                self._active.discard(id(binding))
            self._binding_kinds[id(binding)] = kind
            kinds.append(kind)
        if not kinds or any(kind is None for kind in kinds):
            return None
        first = kinds[0]
        if all(kind == first for kind in kinds):
            return first
        if all(kind.is_module for kind in kinds):  # type: ignore[union-attr]
            return MODULE
        return None

    def _binding(self, binding: Binding, depth: int) -> Kind | None:
        if binding.kind == "assign" and binding.value is not None:
            if binding.index:
                value = _element_at(binding.value, binding.index)
                return self.kind(value, depth) if value is not None else None
            return self.kind(binding.value, depth)
        if binding.kind == "for" and binding.value is not None:
            return self.element_kind(binding.value, binding.index, depth)
        if binding.kind == "param":
            annotation = getattr(binding.node, "annotation", None)
            if annotation is not None and self.model.qualname(annotation) in torch_api.MODULE_BASE_CLASSES:
                return MODULE
        return None

    def element_kind(self, iterable: ast.AST, index: tuple[int, ...], depth: int = 0) -> Kind | None:
        """Return the kind of the loop variable of `for target in iterable` (at `index` of a tuple target)."""
        iterable = _unwrap_iteration(iterable)
        if isinstance(iterable, (ast.List, ast.Tuple)) and index == () and iterable.elts:
            # `for m in [model.layer1, model.fc]`: every element must be a module.
            kinds = [self.kind(element, depth + 1) for element in iterable.elts]
            return MODULE if all(kind is not None and kind.is_module for kind in kinds) else None
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute):
            method = iterable.func.attr
            receiver = self.kind(iterable.func.value, depth + 1)
            if receiver is not None and receiver.is_module:
                if PARAMETER_ITERATORS.get(method) == index:
                    return PARAMETER
                if MODULE_ITERATORS.get(method) == index:
                    return MODULE
            return None
        if index == ():
            container = self.kind(iterable, depth + 1)
            if container is not None and container.is_container and container.qualname != "torch.nn.ModuleDict":
                return MODULE
        return None

    # Calls and attributes

    def _call(self, expr: ast.Call, depth: int) -> Kind | None:
        qualname = self.model.call_qualname(expr)
        if qualname is not None:
            return self._library_call(qualname, expr, depth)
        func = expr.func
        if isinstance(func, ast.Attribute) and func.attr in torch_api.MODULE_RETURNING_METHODS:
            receiver = self.kind(func.value, depth + 1)
            if receiver is not None and receiver.is_module:
                return receiver
            return None
        if isinstance(func, ast.Name):
            bindings = self.model.lookup(func.id, func)
            if len(bindings) != 1:
                return None
            binding = bindings[0]
            if binding.kind == "class" and self.is_module_class(binding.node):  # type: ignore[arg-type]
                return Kind("module", func.id, binding.node)  # type: ignore[arg-type]
            if binding.kind == "def":
                return self._returned_kind(binding.node, depth)  # type: ignore[arg-type]
        return None

    def _library_call(self, qualname: str, expr: ast.Call, depth: int) -> Kind | None:
        if qualname == "torch.nn.Parameter":
            return PARAMETER
        if qualname in torch_api.TENSOR_FACTORIES:
            return TENSOR
        if qualname in torch_api.MODULE_WRAPPERS:
            inner = self.kind(expr.args[0], depth + 1) if expr.args else None
            if inner is not None and inner.is_module:
                # torch.compile and deepcopy keep the model's attributes; DDP-style wrappers keep it in `.module`.
                if qualname in ("copy.deepcopy", "torch.compile"):
                    return inner
                return Kind("module", qualname, wrapped=inner)
            return None
        if qualname.startswith("transformers.") and qualname.endswith(".from_pretrained"):
            class_name = qualname.split(".")[-2]
            return Kind("module", qualname) if "Model" in class_name else None
        if torch_api.is_module_constructor(qualname):
            return Kind("module", qualname)
        return None

    def _returned_kind(self, function: ast.FunctionDef | ast.AsyncFunctionDef, depth: int) -> Kind | None:
        if function not in self._returned_kinds:
            self._returned_kinds[function] = None  # Guards against recursion through the function itself.
            self._returned_kinds[function] = self._infer_returned_kind(function, depth)
        return self._returned_kinds[function]

    def _infer_returned_kind(self, function: ast.FunctionDef | ast.AsyncFunctionDef, depth: int) -> Kind | None:
        returns = [
            node.value
            for node in self.model.subtree(function)
            if isinstance(node, ast.Return) and self.model.enclosing_function(node) is function
        ]
        if not returns or any(value is None for value in returns):
            return None
        kinds = [self.kind(value, depth + 1) for value in returns]
        first = kinds[0]
        if first is None or any(kind != first for kind in kinds):
            return None
        return first

    def _attribute(self, expr: ast.Attribute, depth: int) -> Kind | None:
        owner = self.kind(expr.value, depth + 1)
        if owner is None or not owner.is_module:
            return None
        if owner.user_class is not None:
            return self._user_attribute(owner.user_class, expr.attr, depth)
        if expr.attr == "module" and owner.wrapped is not None:
            return owner.wrapped
        if expr.attr == "module" and owner.qualname is None:
            return MODULE  # DataParallel/DDP keep the wrapped model in `.module`.
        if expr.attr in torch_api.PARAMETER_ATTRIBUTES or expr.attr.endswith(("_weight", "_bias", "_token")):
            return PARAMETER if owner.qualname is not None else None
        if owner.qualname != LIBRARY_SUBMODULE and torch_api.is_library_model(owner.qualname) and not expr.attr.startswith("_"):
            # Public attributes of library models are their submodules: `features`, `fc`, `layer4`, ...
            return Kind("module", LIBRARY_SUBMODULE)
        return None

    def _user_attribute(self, node: ast.ClassDef, attr: str, depth: int) -> Kind | None:
        """Return the kind of `self.<attr>` as the class's methods assign it."""
        key = (node, attr)
        if key not in self._attribute_kinds:
            self._attribute_kinds[key] = None  # Guards against `self.a = self.a.to(...)` recursion.
            self._attribute_kinds[key] = self._infer_user_attribute(node, attr, depth)
        return self._attribute_kinds[key]

    def _infer_user_attribute(self, node: ast.ClassDef, attr: str, depth: int) -> Kind | None:
        values = []
        for statement in self.model.subtree(node):
            if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and target.attr == attr
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        values.append(statement.value)
        kinds = [self.kind(value, depth + 1) for value in values]
        if not kinds or any(kind is None for kind in kinds):
            return None
        first = kinds[0]
        if all(kind == first for kind in kinds):
            return first
        if all(kind.is_module for kind in kinds):  # type: ignore[union-attr]
            return MODULE
        return None


def _unwrap_iteration(iterable: ast.AST) -> ast.AST:
    """Strip wrappers that keep the elements of an iterable: `list(x)`, `tuple(x)`, `reversed(x)`, `x[:-1]`."""
    for _ in range(5):
        if (
            isinstance(iterable, ast.Call)
            and isinstance(iterable.func, ast.Name)
            and iterable.func.id in ("list", "tuple", "reversed", "iter")
            and len(iterable.args) == 1
            and not iterable.keywords
        ):
            iterable = iterable.args[0]
        elif isinstance(iterable, ast.Subscript) and isinstance(iterable.slice, ast.Slice):
            inner = iterable.value
            # Only a slice of a call result or a plain list keeps elements; a slice of a module is handled by kind().
            if isinstance(inner, (ast.Call, ast.List, ast.Tuple)):
                iterable = inner
            else:
                break
        else:
            break
    return iterable


def _element_at(value: ast.AST, index: tuple[int, ...]) -> ast.AST | None:
    node = value
    for position in index:
        if not isinstance(node, (ast.Tuple, ast.List)) or position >= len(node.elts):
            return None
        node = node.elts[position]
    return node
