"""Value flow: where the value passed to `backward()` comes from, and what stops its gradient.

The GS2 and GS5 rules ask questions about the path from a model output to `backward()`.
Was the forward pass run under `torch.no_grad()`? Was the loss turned into a Python number on
the way? Did `argmax` cut a loss term off the graph? Does a softmax meet `CrossEntropyLoss`?
This module works them out without running the code:

- `GradMode` tells which statements run with gradient recording turned off.
- `ValueFlow.definitions` gives the assignments of a name that can reach a use of it (a
  flow-sensitive refinement of the semantic model's bindings: the last assignment before the
  use, earlier ones that an `if` may skip, and later ones of an enclosing loop).
- `ValueFlow.trace` follows a value back through assignments, tuple unpacking, arithmetic,
  tensor methods and loss functions to its sources (model calls, parameters, data, constants)
  and records the operations on the way that stop the gradient.
- `ValueFlow.activation` tells whether a value is the output of a softmax, log-softmax or
  sigmoid, looking through a module's `forward` and the last layer of an `nn.Sequential`.
- `layer_paths` tells, inside a module's `forward`, which of its own layers reach the output
  only through `.detach()` or a `no_grad` block.

Every answer is None or empty when the evidence is not certain, so that rules stay quiet.
"""

from __future__ import annotations

import ast
import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradsight.static import torch_api
from gradsight.static.kinds import PARAMETER_ITERATORS, KindInference
from gradsight.static.memo import SubtreeMemo
from gradsight.static.semantic import Binding, SemanticModel, StatementIndex, child_fields, child_nodes, subtree, walk
from gradsight.static.values import ValueResolver

if TYPE_CHECKING:
    from gradsight.static.context import Context

# A trace gives up after this many steps, and its result is then incomplete (rules stay quiet).
_MAX_TRACE_STEPS = 600
_MAX_DEPTH = 12

# Source kinds.
MODEL = "model"  # the output of a module or of a callable that is probably a model
PARAMETER = "parameter"  # a parameter or a leaf tensor created with requires_grad=True
UNKNOWN = "unknown"  # a value the analysis cannot see into; it may carry a gradient
DATA = "data"  # inputs, labels and tensors built without requires_grad
CONSTANT = "constant"

# Roles of a value in the expression that uses it.
VALUE = "value"
TARGET = "target"  # the target argument of a loss function
INDEX = "index"  # an index, mask or condition argument

# Reasons a gradient stops.
DETACH = "detach"  # `.detach()`, `.data`
NUMBER = "number"  # `.item()`, `.tolist()`, `.numpy()`, `float()`, numpy and math functions
REBUILD = "rebuild"  # `torch.tensor(x)` copies the data into a new tensor
NO_GRAD = "no_grad"  # computed under torch.no_grad(), inference_mode() or set_grad_enabled(False)

_CUT_METHODS = {"detach": DETACH, "detach_": DETACH, "item": NUMBER, "tolist": NUMBER, "numpy": NUMBER}
_NON_DIFFERENTIABLE_METHODS = frozenset(
    {
        "argmax", "argmin", "round", "round_", "sign", "sign_", "sgn", "floor", "floor_", "ceil", "ceil_", "trunc",
        "trunc_", "long", "int", "bool", "byte", "short", "char", "eq", "ne", "gt", "lt", "ge", "le", "greater",
        "less", "greater_equal", "less_equal", "not_equal", "argsort", "signbit", "heaviside", "bucketize",
    }
)
_NON_DIFFERENTIABLE_FUNCTIONS = frozenset(
    "torch." + name
    for name in (
        "argmax", "argmin", "round", "sign", "sgn", "floor", "ceil", "trunc", "eq", "ne", "gt", "lt", "ge", "le",
        "greater", "less", "greater_equal", "less_equal", "not_equal", "argsort", "signbit", "heaviside", "bucketize",
    )
)
_REBUILD_FUNCTIONS = frozenset({"torch.tensor", "torch.Tensor", "torch.FloatTensor", "torch.DoubleTensor", "torch.cuda.FloatTensor", "torch.from_numpy"})
# Methods whose arguments (not the receiver) are indices, masks or positions.
_INDEX_METHODS = frozenset(
    {
        "gather", "index_select", "take", "take_along_dim", "scatter", "scatter_", "scatter_add", "scatter_add_",
        "scatter_reduce", "masked_fill", "masked_fill_", "masked_select", "masked_scatter", "index_fill", "index_add",
        "index_copy", "index_put", "repeat_interleave",
    }
)
_CONSTANT_METHODS = frozenset({"size", "dim", "numel", "nelement", "element_size", "stride", "get_device", "ndimension"})
_CONSTANT_ATTRIBUTES = frozenset({"shape", "device", "dtype", "ndim", "is_cuda", "requires_grad", "is_leaf"})
_TRANSPARENT_BUILTINS = frozenset({"sum", "max", "min", "abs", "pow", "round", "tuple", "list", "sorted", "reversed", "zip", "enumerate", "iter", "next", "dict"})
_NUMBER_BUILTINS = frozenset({"float", "int", "bool", "complex", "str", "repr", "format"})
_CONSTANT_BUILTINS = frozenset({"len", "range", "isinstance", "hasattr", "id", "type"})
_LIST_MUTATORS = frozenset({"append", "extend", "insert", "add"})
# Methods that keep an activation's meaning: reshaping, casts, moves and clamping.
_SHAPE_METHODS = frozenset(
    {
        "view", "view_as", "reshape", "reshape_as", "squeeze", "unsqueeze", "flatten", "permute", "transpose", "t",
        "contiguous", "float", "double", "half", "bfloat16", "to", "cuda", "cpu", "clamp", "clamp_min", "clip",
        "type_as", "expand", "expand_as",
    }
)
# Node types that `ValueFlow._index_scope` never records, skipped before its type tests.
_IGNORED_BY_INDEX = frozenset({ast.Load, ast.Store, ast.Del, ast.Constant, ast.Attribute, ast.keyword, ast.arguments, ast.arg, ast.Expr})
_LIBRARIES_BACKWARD = ("accelerate.", "lightning.", "pytorch_lightning.", "deepspeed.", "lightning_fabric.")
_BACKWARD_RECEIVERS = frozenset({"accelerator", "fabric", "engine", "model_engine", "trainer"})


@dataclass(frozen=True)
class Cut:
    """An operation that stops the gradient: `node` is where, `reason` one of DETACH, NUMBER, REBUILD, NO_GRAD."""

    node: ast.AST
    reason: str


@dataclass(frozen=True)
class Source:
    """A starting point of part of a traced value, and the operations on its way.

    `cuts` lists the operations that stop the gradient, the one nearest the traced value first.
    `non_differentiable` is the first operation on the way (`argmax`, a comparison, an integer
    cast) whose result has no gradient.
    """

    node: ast.AST
    kind: str
    cuts: tuple[Cut, ...] = ()
    non_differentiable: ast.AST | None = None
    role: str = VALUE

    @property
    def live(self) -> bool:
        """Tell whether a gradient may flow from the traced value back into this source."""
        return self.kind in (MODEL, PARAMETER, UNKNOWN) and not self.cuts and self.non_differentiable is None


@dataclass
class Trace:
    sources: list[Source] = field(default_factory=list)
    # Statements whose values the trace went through (assignments, loop headers).
    statements: set[ast.AST] = field(default_factory=set)
    # Loss function calls on the way whose result carries on unchanged: (call, its input argument).
    losses: list[tuple[ast.Call, ast.expr]] = field(default_factory=list)
    # Calls of this file's functions decorated to run without gradients, whose returned values the trace followed.
    no_grad_helpers: list[tuple[ast.Call, ast.FunctionDef | ast.AsyncFunctionDef]] = field(default_factory=list)
    # False when the trace stopped early: rules must then not conclude anything.
    complete: bool = True


@dataclass(frozen=True)
class Activation:
    """A value that is the output of a softmax, log-softmax or sigmoid applied at `node`.

    `names` are the variables the value went through on its way. `inside_model` is True when
    the activation sits in a module's `forward` or is the last layer of an `nn.Sequential`.
    """

    kind: str
    node: ast.AST
    names: tuple[ast.AST, ...] = ()
    inside_model: bool = False


def flow_of(ctx: Context) -> ValueFlow:
    """Return the file's ValueFlow, built on first use and shared by every rule."""
    flow = ctx.state.get("flow")
    if flow is None:
        flow = ctx.state["flow"] = ValueFlow(ctx.model, ctx.kinds, ctx.values)
    return flow


class GradMode:
    """Tell which statements run with gradient recording turned off."""

    def __init__(self, model: SemanticModel, values: ValueResolver) -> None:
        self.model = model
        self.values = values
        self._cache: dict[ast.AST, ast.AST | None] = {}

    def disabled_by(self, node: ast.AST) -> ast.AST | None:
        """Return the `with` block or decorated function that turns gradients off around `node`, or None."""
        if node in self._cache:
            return self._cache[node]
        result = None
        for ancestor in self.model.ancestors(node):
            if isinstance(ancestor, (ast.With, ast.AsyncWith)):
                mode = self.with_mode(ancestor)
                if mode is not None:
                    result = ancestor if mode is False else None
                    break
            elif isinstance(ancestor, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(self._context_mode(decorator) is False for decorator in ancestor.decorator_list):
                    result = ancestor
                break
            elif isinstance(ancestor, (ast.Lambda, ast.ClassDef)):
                break
        self._cache[node] = result
        return result

    def disabling_decorator(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.expr | None:
        """Return the decorator that turns gradients off for the whole function (`@torch.no_grad()`), if any."""
        return next((decorator for decorator in function.decorator_list if self._context_mode(decorator) is False), None)

    def with_mode(self, node: ast.With | ast.AsyncWith) -> bool | None:
        modes = [self._context_mode(item.context_expr) for item in node.items]
        known = [mode for mode in modes if mode is not None]
        return known[-1] if known else None

    def _context_mode(self, expr: ast.AST) -> bool | None:
        """Return False for a context that turns gradients off, True for one that turns them on, None otherwise."""
        call = expr if isinstance(expr, ast.Call) else None
        qualname = self.model.qualname(call.func if call is not None else expr)
        if qualname in torch_api.NO_GRAD:
            if call is not None and qualname == "torch.inference_mode" and call.args:
                flag = self.values.resolve(call.args[0])
                return False if flag is not None and flag.value is True else None
            return False
        if qualname in torch_api.ENABLE_GRAD:
            return True
        if qualname in torch_api.SET_GRAD_ENABLED and call is not None and call.args:
            flag = self.values.resolve(call.args[0])
            if flag is not None and isinstance(flag.value, bool):
                return flag.value
        return None


class ValueFlow:
    def __init__(self, model: SemanticModel, kinds: KindInference, values: ValueResolver) -> None:
        self.model = model
        self.kinds = kinds
        self.values = values
        self.grad_mode = GradMode(model, values)
        self._definitions: dict[ast.Name, list[Binding] | None] = {}
        self._traces: dict[ast.AST, Trace] = {}
        self._activations: dict[ast.AST, Activation | None] = {}
        self._mutations: dict[ast.AST, dict[str, list[ast.expr]]] = {}
        self._loads: dict[ast.AST, dict[str, list[ast.Name]]] = {}
        self._returned: dict[ast.AST, set[str]] = {}
        self._orders: dict[int, tuple[list[Binding], list[Binding], list[tuple[int, int]]]] = {}
        self._pure: dict[ast.AST, bool] = {}
        self._active: set[int] = set()
        self._condition_chains: dict[ast.AST, list[tuple[int, str]]] = {}
        # Returned names by owner, built once. It stays None when the node index misses a `yield`.
        self._returns_grouped = False
        self._owners_of_returns: dict[ast.AST, set[str]] | None = None

    # Reaching definitions

    def definitions(self, name: ast.Name) -> list[Binding] | None:
        """Return the bindings of `name` that can reach this use of it, or None when unknown."""
        if name in self._definitions:
            return self._definitions[name]
        bindings = self.model.lookup(name.id, name)
        use_scope = self.model.scope_of(name)
        result: list[Binding] | None
        if not bindings:
            result = None
        elif any(binding.scope is not use_scope for binding in bindings):
            result = list(bindings)  # A global or closure variable: any of its assignments may be current.
        else:
            result = self._reaching(name, bindings)
        self._definitions[name] = result
        return result

    def _reaching(self, use: ast.AST, bindings: list[Binding]) -> list[Binding]:
        ordered, positions = self._ordered(bindings)
        position = _position(use)
        split = bisect.bisect_right(positions, position)
        use_chain = self._conditions(use)
        reaching: list[Binding] = []
        dominating: Binding | None = None
        for binding in reversed(ordered[:split]):
            reaching.append(binding)
            chain = self._conditions(binding.node)
            if use_chain[: len(chain)] == chain:
                dominating = binding
                break
        # In a loop, assignments later in the body reach the use from the previous iteration.
        for loop in self._loops(use):
            if dominating is not None and _contains(loop, dominating.node):
                break
            loop_end = (getattr(loop, "end_lineno", 0) or 0, getattr(loop, "end_col_offset", 0) or 0)
            for index in range(split, len(ordered)):
                if positions[index] > loop_end:
                    break
                if ordered[index] not in reaching:
                    reaching.append(ordered[index])
        return reaching

    def _ordered(self, bindings: list[Binding]) -> tuple[list[Binding], list[tuple[int, int]]]:
        """Return a scope's bindings of one name sorted by where they take effect, with those positions."""
        key = id(bindings)
        cached = self._orders.get(key)
        if cached is None or cached[0] is not bindings:
            ordered = sorted(bindings, key=_binding_position)
            cached = (bindings, ordered, [_binding_position(b) for b in ordered])
            self._orders[key] = cached
        return cached[1], cached[2]

    def _conditions(self, node: ast.AST) -> list[tuple[int, str]]:
        """Return the branches (statement, field) that decide whether `node` runs, outermost first.

        The list is memoised and shared, so callers must not modify it.
        """
        cached = self._condition_chains.get(node)
        if cached is None:
            cached = self._condition_chains[node] = self._find_conditions(node)
        return cached

    def _find_conditions(self, node: ast.AST) -> list[tuple[int, str]]:
        chain = []
        child = node
        for ancestor in self.model.ancestors(node):
            if isinstance(ancestor, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Module, ast.ClassDef)):
                break
            if isinstance(ancestor, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.IfExp, ast.match_case, ast.ExceptHandler, ast.comprehension)):
                branch = _field_of(ancestor, child)
                if not (isinstance(ancestor, ast.Try) and branch in ("body", "finalbody")) and branch not in ("test", "iter"):
                    chain.append((id(ancestor), branch))
            child = ancestor
        chain.reverse()
        return chain

    def _loops(self, node: ast.AST) -> Iterator[ast.AST]:
        for ancestor in self.model.ancestors(node):
            if isinstance(ancestor, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Module, ast.ClassDef)):
                return
            if isinstance(ancestor, (ast.For, ast.AsyncFor, ast.While)):
                yield ancestor

    # Names used and changed in a scope

    def loads(self, scope_node: ast.AST) -> dict[str, list[ast.Name]]:
        """Return the names read in a function or module body (nested functions excluded), by name."""
        self._index_scope(scope_node)
        return self._loads[scope_node]

    def list_additions(self, scope_node: ast.AST) -> dict[str, list[ast.expr]]:
        """Return, per variable, the values added to it with `.append(v)`, `.extend(v)`, `.insert(i, v)` or `[k] = v`."""
        self._index_scope(scope_node)
        return self._mutations[scope_node]

    def returned_names(self, scope_node: ast.AST) -> set[str]:
        """Return the names that appear in the `return` and `yield` values of a function or module body."""
        found = self._returned.get(scope_node)
        if found is not None:
            return found
        if isinstance(scope_node, (ast.Module, *_NESTED_SCOPES)):
            owners = self._returned_by_owner()
            if owners is not None:
                found = self._returned[scope_node] = owners.get(scope_node, set())
                return found
        self._index_scope(scope_node)
        return self._returned[scope_node]

    def _returned_by_owner(self) -> dict[ast.AST, set[str]] | None:
        """Group the names of every `return` and `yield` value by the function, class or module whose body has it.

        Uses the semantic model's node index in place of a walk of each scope. Returns None when
        a `yield` sits where the index does not reach (a parameter annotation, a comprehension
        target); `returned_names` then walks the scope.
        """
        if self._returns_grouped:
            return self._owners_of_returns
        self._returns_grouped = True
        owners: dict[ast.AST, set[str]] = {}
        for index in self.model.statement_indexes:
            found = _returns_by_owner(index)
            if found is None:
                return None
            owners.update(found)  # each owner lies in one statement
        self._owners_of_returns = owners
        return owners

    def _index_scope(self, scope_node: ast.AST) -> None:
        """Collect the loads, list additions and returned names of a scope in one walk."""
        if scope_node in self._loads:
            return
        loads: dict[str, list[ast.Name]] = {}
        additions: dict[str, list[ast.expr]] = {}
        returned: set[str] = set()
        for node in _scope_nodes(scope_node):
            node_type = type(node)
            if node_type in _IGNORED_BY_INDEX:
                continue
            if node_type is ast.Name:
                if isinstance(node.ctx, ast.Load):
                    loads.setdefault(node.id, []).append(node)
            elif node_type is ast.Call:
                func = node.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.attr in _LIST_MUTATORS and node.args:
                    additions.setdefault(func.value.id, []).append(node.args[-1])
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                        additions.setdefault(target.value.id, []).append(node.value)
            elif isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom)) and node.value is not None:
                returned.update(name.id for name in ast.walk(node.value) if isinstance(name, ast.Name))
        self._loads[scope_node] = loads
        self._mutations[scope_node] = additions
        self._returned[scope_node] = returned

    # Backward calls

    def backward_value(self, call: ast.Call) -> ast.expr | None:
        """Return the tensor that a backward call differentiates, or None when `call` is not one.

        Understands `loss.backward()`, `scaler.scale(loss).backward()`, `torch.autograd.backward(loss)`,
        `accelerator.backward(loss)`, `fabric.backward(loss)` and `self.manual_backward(loss)`.
        """
        func = call.func
        if not isinstance(func, ast.Attribute):
            return None
        if func.attr == "manual_backward" and call.args:
            return call.args[0]
        if func.attr != "backward":
            return None
        qualname = self.model.qualname(func)
        if qualname == "torch.autograd.backward":
            return call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "tensors"), None)
        receiver = func.value
        if call.args and self._is_backward_helper(receiver):
            return call.args[0]
        if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute) and receiver.func.attr == "scale" and len(receiver.args) == 1:
            return receiver.args[0]  # GradScaler.scale(loss).backward()
        return receiver

    def _is_backward_helper(self, receiver: ast.expr) -> bool:
        """Tell whether `receiver.backward(loss)` is a training library's helper (Accelerate, Fabric, DeepSpeed)."""
        name = None
        if isinstance(receiver, ast.Attribute):
            name = receiver.attr
        elif isinstance(receiver, ast.Name):
            name = receiver.id
        if name in _BACKWARD_RECEIVERS:
            return True
        if isinstance(receiver, ast.Name):
            for binding in self.model.lookup(receiver.id, receiver):
                if binding.kind == "assign" and isinstance(binding.value, ast.Call):
                    qualname = self.model.call_qualname(binding.value) or ""
                    if qualname.startswith(_LIBRARIES_BACKWARD):
                        return True
        return False

    # Tracing values to their sources

    def trace(self, expr: ast.expr) -> Trace:
        """Follow `expr` back to where its parts come from, memoised per expression."""
        if expr not in self._traces:
            self._traces[expr] = _Tracer(self).run(expr)
        return self._traces[expr]

    def no_grad_helper(self, call: ast.Call) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """Return the function of this file that `call` runs when a decorator turns gradients off for it.

        Follows `helper(...)` to a function defined once in scope and `self.helper(...)` to a method of
        the enclosing class.
        """
        func = call.func
        function: ast.AST | None = None
        if isinstance(func, ast.Name):
            bindings = self.model.lookup(func.id, func)
            if len(bindings) == 1 and bindings[0].kind == "def":
                function = bindings[0].node
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
            owner = self.model.enclosing_class(call)
            methods = [m for m in (owner.body if owner is not None else []) if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == func.attr]
            if len(methods) == 1:
                function = methods[0]
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or self.grad_mode.disabling_decorator(function) is None:
            return None
        return function

    def is_optimized_leaf(self, call: ast.Call) -> bool:
        """Tell whether `name = x.requires_grad_()` makes a leaf tensor that an optimizer of this file receives."""
        parent = self.model.parent(call)
        if not (isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name)):
            return False
        flag = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
        resolved = self.values.resolve(flag) if flag is not None else None
        if flag is not None and (resolved is None or resolved.value is not True):
            return False
        name = parent.targets[0].id
        for optimizer in self.model.nodes_of(ast.Call):
            if self.model.call_qualname(optimizer) not in torch_api.OPTIMIZERS:  # type: ignore[arg-type]
                continue
            params = optimizer.args[0] if optimizer.args else next((k.value for k in optimizer.keywords if k.arg == "params"), None)  # type: ignore[attr-defined]
            if params is not None and any(isinstance(node, ast.Name) and node.id == name for node in walk(params)):
                return True
        return False

    def call_category(self, call: ast.Call) -> str:
        """Classify a call for tracing: "model", "loss", "parameter-free", "function", "tensor" or "unknown"."""
        qualname = self.model.call_qualname(call)
        if qualname is not None:
            return "tensor" if qualname.startswith("torch.") else "unknown"
        func = call.func
        kind = self.kinds.kind(func)
        if kind is not None and kind.is_module:
            if kind.qualname and (kind.qualname in torch_api.PARAMETER_FREE_MODULES):
                return "parameter-free"
            if kind.qualname and kind.qualname.startswith("torch.nn.") and kind.qualname.endswith("Loss"):
                return "loss"
            return MODEL
        if isinstance(func, ast.Name):
            bindings = self.model.lookup(func.id, func)
            if not bindings:
                return "builtin"
            if all(binding.kind == "def" for binding in bindings):
                return "function"
            if all(binding.kind in ("param", "with", "assign", "for") for binding in bindings):
                # `criterion(outputs, labels)` or `model(inputs)` where the callable is a parameter or a
                # variable of unknown type (`model, optimizer = accelerator.prepare(model, optimizer)`).
                return "loss" if _is_loss_name(func.id) else MODEL
        if isinstance(func, ast.Attribute) and kind is None and _is_loss_name(func.attr):
            return "loss"  # `self.criterion(...)` set from a constructor argument
        if isinstance(func, ast.Attribute) and self.kinds.is_module(func.value):
            return MODEL if func.attr not in torch_api.MODULE_RETURNING_METHODS and func.attr not in PARAMETER_ITERATORS else "unknown"
        return "unknown"

    def is_pure_function(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        """Tell whether a function of this file computes its result from its arguments with torch operations only."""
        if function in self._pure:
            return self._pure[function]
        self._pure[function] = False
        result = True
        for node in _walk_scope(function):
            if isinstance(node, ast.Call):
                qualname = self.model.call_qualname(node)
                if qualname is not None:
                    if not qualname.startswith(("torch.", "math.", "numpy.")) or torch_api.is_module_constructor(qualname):
                        result = False
                elif isinstance(node.func, ast.Name):
                    if self.model.lookup(node.func.id, node.func):
                        result = False  # a call of a variable or of another function: it may run a model
                elif isinstance(node.func, ast.Attribute):
                    root = node.func.value
                    while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
                        root = root.func if isinstance(root, ast.Call) else root.value
                    if isinstance(root, ast.Name) and self.kinds.is_module(root):
                        result = False
                else:
                    result = False
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and self.model.lookup(node.id, node):
                if self.model.lookup(node.id, node)[0].scope is self.model.module_scope and self.kinds.is_module(node):
                    result = False
            if not result:
                break
        self._pure[function] = result
        return result

    # Activations (GS501)

    def activation(self, expr: ast.AST, depth: int = 0) -> Activation | None:
        """Return the softmax, log-softmax or sigmoid that `expr` is the direct output of, if any."""
        if depth > _MAX_DEPTH:
            return None
        key = expr
        if depth == 0 and key in self._activations:
            return self._activations[key]
        if id(expr) in self._active:
            return None
        self._active.add(id(expr))
        try:
            result = self._activation(expr, depth)
        finally:
            self._active.discard(id(expr))
        if depth == 0:
            self._activations[key] = result
        return result

    def _activation(self, expr: ast.AST, depth: int) -> Activation | None:
        if isinstance(expr, ast.Name):
            definitions = self.definitions(expr)
            if not definitions or any(b.kind != "assign" or b.value is None or b.index for b in definitions):
                return None
            found = [self.activation(b.value, depth + 1) for b in definitions]
            first = found[0]
            if first is None or any(a is None or a.kind != first.kind for a in found):
                return None
            return Activation(first.kind, first.node, (expr, *first.names), first.inside_model)
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, (ast.Mult, ast.Div)):
                return self.activation(expr.left, depth + 1) or (self.activation(expr.right, depth + 1) if isinstance(expr.op, ast.Mult) else None)
            if isinstance(expr.op, (ast.Add, ast.Sub)) and _is_number(expr.right):
                return self.activation(expr.left, depth + 1)
            return None
        if isinstance(expr, ast.Subscript):
            return self.activation(expr.value, depth + 1)
        if isinstance(expr, ast.Call):
            return self._call_activation(expr, depth)
        return None

    def _call_activation(self, call: ast.Call, depth: int) -> Activation | None:
        qualname = self.model.call_qualname(call)
        if qualname in torch_api.SOFTMAX:
            return Activation("softmax", call)
        if qualname in torch_api.LOG_SOFTMAX:
            return Activation("log_softmax", call)
        if qualname in torch_api.SIGMOID:
            return Activation("sigmoid", call)
        if qualname == "torch.log" and call.args:
            inner = self.activation(call.args[0], depth + 1)
            return Activation("log_softmax", inner.node, inner.names, inner.inside_model) if inner and inner.kind == "softmax" else None
        if qualname is not None:
            return None
        func = call.func
        if isinstance(func, ast.Attribute) and not self.kinds.is_module(func.value):
            if func.attr in ("softmax", "log_softmax", "sigmoid"):
                return Activation(func.attr, call)
            if func.attr == "log" and not call.args:
                inner = self.activation(func.value, depth + 1)
                return Activation("log_softmax", inner.node, inner.names, inner.inside_model) if inner and inner.kind == "softmax" else None
            if func.attr in _SHAPE_METHODS:
                return self.activation(func.value, depth + 1)
            return None
        return self.module_output_activation(func, depth + 1)

    def module_output_activation(self, module: ast.expr, depth: int = 0) -> Activation | None:
        """Return the activation that a module applies last, when calling `module` ends in one."""
        if depth > _MAX_DEPTH:
            return None
        constructor = self.constructor_of(module)
        qualname = self.model.call_qualname(constructor) if constructor is not None else None
        if constructor is not None and qualname in torch_api.ACTIVATION_MODULES:
            return Activation(torch_api.ACTIVATION_MODULES[qualname], constructor, inside_model=True)
        if constructor is not None and qualname == "torch.nn.Sequential":
            return self._last_layer_activation(constructor, depth)
        if qualname is not None:
            return None

        kind = self.kinds.kind(module)
        if kind is None or kind.user_class is None:
            return None
        forward = _method(kind.user_class, "forward")
        if forward is None:
            return None
        returns = [node.value for node in _walk_scope(forward) if isinstance(node, ast.Return)]
        if not returns or any(value is None for value in returns):
            return None
        found = [self.activation(value, depth + 1) for value in returns]
        first = found[0]
        if first is None or any(a is None or a.kind != first.kind for a in found):
            return None
        return Activation(first.kind, first.node, (), True)

    def _last_layer_activation(self, sequential: ast.Call, depth: int) -> Activation | None:
        if not sequential.args or any(isinstance(a, ast.Starred) for a in sequential.args):
            return None
        last = sequential.args[-1]
        if not isinstance(last, ast.Call):
            return None
        qualname = self.model.call_qualname(last)
        if qualname in torch_api.ACTIVATION_MODULES:
            return Activation(torch_api.ACTIVATION_MODULES[qualname], last, inside_model=True)
        if qualname is not None:
            return None
        found = self.module_output_activation(last, depth + 1)  # a module class of this file
        return Activation(found.kind, found.node, (), True) if found is not None else None

    def constructor_of(self, expr: ast.AST, depth: int = 0) -> ast.Call | None:
        """Return the `nn.X(...)` or `Class(...)` call that built the module `expr` refers to, when it is unique."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Call):
            func = expr.func
            if isinstance(func, ast.Attribute) and func.attr in torch_api.MODULE_RETURNING_METHODS:
                return self.constructor_of(func.value, depth + 1)
            qualname = self.model.call_qualname(expr)
            if qualname is not None and torch_api.is_module_constructor(qualname):
                return expr
            if isinstance(func, ast.Name) and self.kinds.is_module(expr):
                return expr
            return None
        if isinstance(expr, ast.Name):
            bindings = self.model.lookup(expr.id, expr)
            if len(bindings) != 1 or bindings[0].kind != "assign" or bindings[0].value is None or bindings[0].index:
                return None
            return self.constructor_of(bindings[0].value, depth + 1)
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
            owner = self.model.enclosing_class(expr)
            if owner is None:
                return None
            values = self.class_attributes(owner).get(expr.attr, [])
            return self.constructor_of(values[0], depth + 1) if len(values) == 1 else None
        return None

    def class_attributes(self, node: ast.ClassDef) -> dict[str, list[ast.expr]]:
        """Return the values assigned to `self.<name>` in a class's methods, by attribute name."""
        return _class_attributes(node)  # type: ignore[return-value]


class _Tracer:
    """One trace: an explicit work list, so that long assignment chains cannot overflow the stack."""

    def __init__(self, flow: ValueFlow) -> None:
        self.flow = flow
        self.model = flow.model
        self.result = Trace()
        self.seen: set[tuple[int, bool, bool, str]] = set()
        self.work: list[tuple[ast.AST, tuple[Cut, ...], ast.AST | None, str]] = []

    def run(self, expr: ast.expr) -> Trace:
        self.push(expr, (), None, VALUE)
        steps = 0
        while self.work:
            steps += 1
            if steps > _MAX_TRACE_STEPS:
                self.result.complete = False
                break
            node, cuts, non_differentiable, role = self.work.pop()
            self.visit(node, cuts, non_differentiable, role)
        return self.result

    def push(self, node: ast.AST | None, cuts: tuple[Cut, ...], non_differentiable: ast.AST | None, role: str) -> None:
        if node is None:
            return
        key = (id(node), bool(cuts), non_differentiable is None, role)
        if key in self.seen:
            return
        self.seen.add(key)
        self.work.append((node, cuts, non_differentiable, role))

    def source(self, node: ast.AST, kind: str, cuts: tuple[Cut, ...], non_differentiable: ast.AST | None, role: str) -> None:
        self.result.sources.append(Source(node, kind, cuts, non_differentiable, role))

    def visit(self, node: ast.AST, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        if isinstance(node, ast.Constant) or isinstance(node, ast.JoinedStr):
            self.source(node, CONSTANT, cuts, nd, role)
        elif isinstance(node, ast.Name):
            self.visit_name(node, cuts, nd, role)
        elif isinstance(node, ast.Attribute):
            self.visit_attribute(node, cuts, nd, role)
        elif isinstance(node, ast.Subscript):
            self.push(node.value, cuts, nd, role)
        elif isinstance(node, ast.Call):
            self.visit_call(node, cuts, nd, role)
        elif isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                self.push(operand, cuts, nd or node, role)
        elif isinstance(node, ast.IfExp):
            self.push(node.body, cuts, nd, role)
            self.push(node.orelse, cuts, nd, role)
        elif isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Tuple, ast.List, ast.Set, ast.Starred, ast.NamedExpr, ast.Await)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.push(child, cuts, nd, role)
        elif isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            self.push(node.elt, cuts, nd, role)
        elif isinstance(node, ast.DictComp):
            self.push(node.value, cuts, nd, role)
        elif isinstance(node, ast.Dict):
            for value in node.values:
                self.push(value, cuts, nd, role)
        else:
            self.source(node, UNKNOWN, cuts, nd, role)

    def visit_name(self, node: ast.Name, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        if node.id == "self":
            self.source(node, UNKNOWN, cuts, nd, role)
            return
        definitions = self.flow.definitions(node)
        if not definitions:
            self.source(node, UNKNOWN, cuts, nd, role)
            return
        for binding in definitions:
            self.visit_binding(node, binding, cuts, nd, role)

    def visit_binding(self, use: ast.Name, binding: Binding, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        statement = binding.node
        self.result.statements.add(statement)
        if binding.kind == "assign" and binding.value is not None:
            value = _element_at(binding.value, binding.index)
            cuts = self.no_grad_cut(statement, value, cuts)
            self.push(value, cuts, nd, role)
            self.push_additions(use, binding, cuts, nd, role)
        elif binding.kind == "other" and isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
            cuts = self.no_grad_cut(statement, statement.value, cuts)
            self.push(statement.value, cuts, nd, role)
            self.push(statement.target, cuts, nd, role)  # the value before the update
        elif binding.kind == "for" and binding.value is not None:
            self.visit_loop_variable(use, binding.value, cuts, nd, role)
        elif binding.kind == "param" or binding.kind == "with":
            self.source(use, UNKNOWN, cuts, nd, role)
        elif binding.kind in ("def", "class", "import"):
            self.source(use, CONSTANT, cuts, nd, role)
        else:
            self.source(use, UNKNOWN, cuts, nd, role)

    def push_additions(self, use: ast.Name, binding: Binding, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        """Follow what is appended to a list (or stored in a dict) after it is created."""
        value = binding.value
        is_container = isinstance(value, (ast.List, ast.Dict, ast.Set, ast.Tuple)) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ("list", "dict", "set") and not self.model.lookup(value.func.id, value.func)
        )
        if not is_container or binding.index:
            return
        additions = self.flow.list_additions(binding.scope.node).get(binding.name, [])
        if not additions and isinstance(value, (ast.List, ast.Dict, ast.Set, ast.Call)) and not getattr(value, "elts", getattr(value, "keys", None)):
            # An empty container filled in a way this analysis does not follow.
            self.source(use, UNKNOWN, cuts, nd, role)
        for addition in additions:
            self.push(addition, cuts, nd, role)

    def visit_loop_variable(self, use: ast.Name, iterable: ast.expr, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute) and iterable.func.attr in PARAMETER_ITERATORS:
            self.source(use, PARAMETER, cuts, nd, role)
            return
        before = len(self.result.sources)
        pending = len(self.work)
        self.push(iterable, cuts, nd, role)
        # Iterating a value of unknown type (a DataLoader, a dataset) gives data, not a graph.
        self.finish_pending(pending)
        for position in range(before, len(self.result.sources)):
            source = self.result.sources[position]
            if source.kind == UNKNOWN:
                self.result.sources[position] = Source(source.node, DATA, source.cuts, source.non_differentiable, source.role)

    def finish_pending(self, bottom: int) -> None:
        """Run the work list down to `bottom` entries: used where a sub-trace must finish before continuing."""
        steps = 0
        while len(self.work) > bottom:
            steps += 1
            if steps > _MAX_TRACE_STEPS:
                self.result.complete = False
                self.work.clear()
                return
            node, cuts, nd, role = self.work.pop()
            self.visit(node, cuts, nd, role)

    def no_grad_cut(self, statement: ast.AST, value: ast.AST | None, cuts: tuple[Cut, ...]) -> tuple[Cut, ...]:
        """Add a NO_GRAD cut when `statement` computes `value` with gradients turned off."""
        if value is None or isinstance(value, (ast.Name, ast.Tuple, ast.List, ast.Starred, ast.Constant)):
            return cuts  # Binding an existing tensor to a name records no operation.
        disabled = self.flow.grad_mode.disabled_by(statement)
        if disabled is None:
            return cuts
        return (*cuts, Cut(disabled, NO_GRAD))

    def visit_attribute(self, node: ast.Attribute, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        if node.attr == "data":
            self.push(node.value, (*cuts, Cut(node, DETACH)), nd, role)
        elif node.attr in _CONSTANT_ATTRIBUTES:
            self.source(node, CONSTANT, cuts, nd, role)
        elif node.attr == "grad":
            self.source(node, DATA, cuts, nd, role)
        elif isinstance(node.value, ast.Name) and node.value.id == "self":
            self.source(node, UNKNOWN, cuts, nd, role)
        else:
            kind = self.flow.kinds.kind(node)
            if kind is not None and kind.category == "parameter":
                self.source(node, PARAMETER, cuts, nd, role)
            elif self.model.qualname(node) is not None:
                self.source(node, CONSTANT, cuts, nd, role)  # `torch.float32`, `math.pi`
            else:
                self.push(node.value, cuts, nd, role)  # `outputs.loss`, `out.logits`

    def visit_call(self, call: ast.Call, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        func = call.func
        qualname = self.model.call_qualname(call)
        if qualname is not None:
            self.visit_library_call(call, qualname, cuts, nd, role)
            return
        if isinstance(func, ast.Attribute) and not self.flow.kinds.is_module(func.value):
            if self.visit_method(call, func, cuts, nd, role):
                return
        helper = self.flow.no_grad_helper(call)
        if helper is not None:
            self.push_helper_returns(call, helper, cuts, nd, role)
            return
        category = self.flow.call_category(call)
        arguments = [*call.args, *(keyword.value for keyword in call.keywords)]
        if category == MODEL:
            self.source(call, MODEL, cuts, nd, role)
        elif category == "loss":
            self.push_loss_arguments(call, True, cuts, nd, role)
        elif category == "parameter-free":
            for argument in arguments:
                self.push(argument, cuts, nd, role)
        elif category == "builtin":
            name = func.id if isinstance(func, ast.Name) else ""
            if name in _NUMBER_BUILTINS:
                for argument in arguments:
                    self.push(argument, (*cuts, Cut(call, NUMBER)), nd, role)
            elif name in _CONSTANT_BUILTINS:
                self.source(call, CONSTANT, cuts, nd, role)
            elif name in _TRANSPARENT_BUILTINS:
                for argument in arguments:
                    self.push(argument, cuts, nd, role)
            else:
                self.source(call, UNKNOWN, cuts, nd, role)
        elif category == "function":
            # NOTE: the body of a function of this file is not traced: its arguments are followed, and its
            # result counts as an unknown (possibly live) value unless it only applies torch operations.
            bindings = self.model.lookup(func.id, func) if isinstance(func, ast.Name) else []
            if not (len(bindings) == 1 and self.flow.is_pure_function(bindings[0].node)):  # type: ignore[arg-type]
                self.source(call, UNKNOWN, cuts, nd, role)
            for argument in arguments:
                self.push(argument, cuts, nd, role)
        else:
            self.source(call, UNKNOWN, cuts, nd, role)
            if isinstance(func, ast.Attribute):
                self.push(func.value, cuts, nd, role)
            for argument in arguments:
                self.push(argument, cuts, nd, role)

    def push_helper_returns(
        self, call: ast.Call, helper: ast.FunctionDef | ast.AsyncFunctionDef, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str
    ) -> None:
        """Follow what a function decorated with `@torch.no_grad()` returns or yields, with its forward passes cut off.

        torch's decorator also wraps generator functions, so each yielded value is computed without gradients.
        """
        self.result.no_grad_helpers.append((call, helper))
        for node in _walk_scope(helper):
            if not isinstance(node, (ast.Return, ast.Yield)) or node.value is None:
                continue
            # Each element of `return logits, features` is computed under the decorator on its own.
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for value in values:
                self.push(value, self.no_grad_cut(node, value, cuts), nd, role)

    def visit_method(self, call: ast.Call, func: ast.Attribute, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> bool:
        """Follow a tensor method call, or return False when `func` is not among the tensor methods listed here."""
        method = func.attr
        receiver = func.value
        if method in _CUT_METHODS:
            self.push(receiver, (*cuts, Cut(call, _CUT_METHODS[method])), nd, role)
        elif method in _NON_DIFFERENTIABLE_METHODS:
            self.push(receiver, cuts, nd or call, role)
            for argument in call.args:
                self.push(argument, cuts, nd or call, INDEX)
        elif method in ("to", "type") and any(self.model.qualname(a) in torch_api.INTEGER_DTYPES for a in [*call.args, *(k.value for k in call.keywords)]):
            self.push(receiver, cuts, nd or call, role)
        elif method in _CONSTANT_METHODS:
            self.source(call, CONSTANT, cuts, nd, role)
        elif method in _INDEX_METHODS:
            self.push(receiver, cuts, nd, role)
            for argument in [*call.args, *(keyword.value for keyword in call.keywords)]:
                self.push(argument, cuts, nd, INDEX)
        elif method in ("requires_grad_",):
            if self.flow.is_optimized_leaf(call):
                # `z = encoder(x).detach().requires_grad_()` given to an optimizer is a new leaf that trains (latent optimization).
                self.source(call, PARAMETER, cuts, nd, role)
            else:
                self.push(receiver, cuts, nd, role)
        elif method in _TENSOR_METHODS or method in _SHAPE_METHODS:
            self.push(receiver, cuts, nd, role)
            for argument in [*call.args, *(keyword.value for keyword in call.keywords)]:
                self.push(argument, cuts, nd, role)
        else:
            return False
        return True

    def visit_library_call(self, call: ast.Call, qualname: str, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        arguments = [*call.args, *(keyword.value for keyword in call.keywords)]
        last = qualname.rsplit(".", 1)[-1]
        if qualname in _REBUILD_FUNCTIONS:
            for argument in call.args[:1]:
                self.push(argument, (*cuts, Cut(call, REBUILD)), nd, role)
        elif qualname in _NON_DIFFERENTIABLE_FUNCTIONS:
            for argument in arguments:
                self.push(argument, cuts, nd or call, role)
        elif qualname in torch_api.TENSOR_FACTORIES:
            kind = PARAMETER if _requires_grad(self.flow.values, call) else DATA
            self.source(call, kind, cuts, nd, role)
        elif qualname == "torch.nn.Parameter":
            self.source(call, PARAMETER, cuts, nd, role)
        elif qualname.startswith(("numpy.", "math.")):
            for argument in arguments:
                self.push(argument, (*cuts, Cut(call, NUMBER)), nd, role)
        elif qualname.startswith("torch.nn.functional.") and last in torch_api.LOSSES_WITH_TARGET:
            self.push_loss_arguments(call, False, cuts, nd, role)
        elif torch_api.is_module_constructor(qualname):
            self.source(call, CONSTANT, cuts, nd, role)
        elif qualname.startswith("torch."):
            index_first = last in ("where",)
            for position, argument in enumerate(call.args):
                index = (index_first and position == 0) or (last in _INDEX_METHODS and position > 0)
                self.push(argument, cuts, nd, INDEX if index else role)
            for keyword in call.keywords:
                self.push(keyword.value, cuts, nd, INDEX if keyword.arg in ("index", "mask", "condition") else role)
        else:
            self.source(call, UNKNOWN, cuts, nd, role)
            for argument in arguments:
                self.push(argument, cuts, nd, role)

    def push_loss_arguments(self, call: ast.Call, is_module: bool, cuts: tuple[Cut, ...], nd: ast.AST | None, role: str) -> None:
        if is_module:
            kind = self.flow.kinds.kind(call.func)
            name = kind.qualname if kind is not None else None
        else:
            name = self.model.call_qualname(call)
        # A loss known only by its variable name (`criterion`) is taken to be called as (input, target).
        has_target = name is None or name.rsplit(".", 1)[-1] in torch_api.LOSSES_WITH_TARGET
        first = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "input"), None)
        if has_target and first is not None and not cuts and nd is None and role == VALUE:
            self.result.losses.append((call, first))
        for position, argument in enumerate(call.args):
            self.push(argument, cuts, nd, TARGET if has_target and position == 1 else role)
        for keyword in call.keywords:
            if keyword.arg == "target":
                self.push(keyword.value, cuts, nd, TARGET)
            elif keyword.arg == "input":
                self.push(keyword.value, cuts, nd, role)
            else:
                self.push(keyword.value, cuts, nd, INDEX)  # weights, masks and other options


@dataclass(frozen=True)
class LayerPath:
    """The paths from one of a module's own layers to a value in `forward`.

    `live` is True when some path carries a gradient. `cut` is the first operation that stops
    the gradient on a path that does not.
    """

    live: bool
    cut: Cut | None = None


_Paths = dict[str, LayerPath]


class LayerPaths:
    """Follow a module's own layers and parameters (`self.<name>`) through its `forward` to what it returns.

    The walk is flow-sensitive for plain statements, merges the branches of `if` and `try`, and
    runs loop bodies twice so that values carried from one iteration to the next are seen.
    """

    def __init__(self, flow: ValueFlow, own: set[str], stack: tuple[ast.AST, ...] = ()) -> None:
        self.flow = flow
        self.own = own
        self.output: _Paths = {}
        # The forward method and the helpers being followed into, outermost first.
        self.stack = stack

    def run(self, forward: ast.FunctionDef | ast.AsyncFunctionDef) -> _Paths:
        self.stack = (forward,)
        self.block(forward.body, {}, None)
        return self.output

    def block(self, statements: list[ast.stmt], env: dict[str, _Paths], no_grad: ast.AST | None) -> dict[str, _Paths]:
        for statement in statements:
            env = self.statement(statement, env, no_grad)
        return env

    def statement(self, node: ast.stmt, env: dict[str, _Paths], no_grad: ast.AST | None) -> dict[str, _Paths]:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            value = self.expression(node.value, env)
            if no_grad is not None and not isinstance(node.value, (ast.Name, ast.Tuple, ast.List)):
                value = _cut(value, Cut(no_grad, NO_GRAD))
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            env = dict(env)
            for target in targets:
                for name in _target_names(target):
                    if isinstance(node, ast.AugAssign) or isinstance(target, ast.Subscript):
                        env[name] = _merge(env.get(name, {}), value)
                    else:
                        env[name] = value
            return env
        if isinstance(node, ast.Expr):
            return self.mutation(node.value, env, no_grad)
        if isinstance(node, ast.Return) and node.value is not None:
            value = self.expression(node.value, env)
            if no_grad is not None and not isinstance(node.value, ast.Name):
                value = _cut(value, Cut(no_grad, NO_GRAD))
            self.output = _merge(self.output, value)
            return env
        if isinstance(node, ast.If):
            return _merge_env(self.block(node.body, env, no_grad), self.block(node.orelse, env, no_grad))
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            start = dict(env)
            if isinstance(node, (ast.For, ast.AsyncFor)):
                items = self.expression(node.iter, env)
                for name in _target_names(node.target):
                    start[name] = items
            once = self.block(node.body, start, no_grad)
            twice = self.block(node.body, _merge_env(start, once), no_grad)
            return self.block(node.orelse, _merge_env(env, twice), no_grad)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            mode = self.flow.grad_mode.with_mode(node)
            if mode is False:
                return self.block(node.body, env, node)
            if mode is True:
                return self.block(node.body, env, None)  # torch.enable_grad()
            return self.block(node.body, env, no_grad)
        if isinstance(node, ast.Try):
            body = self.block(node.body, env, no_grad)
            merged = body
            for handler in node.handlers:
                merged = _merge_env(merged, self.block(handler.body, env, no_grad))
            merged = _merge_env(merged, self.block(node.orelse, body, no_grad))
            return self.block(node.finalbody, merged, no_grad)
        return env

    def mutation(self, call: ast.expr, env: dict[str, _Paths], no_grad: ast.AST | None) -> dict[str, _Paths]:
        """Follow `x.append(v)`, `x.add_(v)` and `x.detach_()` written as statements."""
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)):
            return env
        name = call.func.value.id
        method = call.func.attr
        env = dict(env)
        if method == "detach_":
            env[name] = _cut(env.get(name, {}), Cut(call, DETACH))
        elif method in _LIST_MUTATORS or method.endswith("_"):
            added: _Paths = {}
            for argument in call.args:
                added = _merge(added, self.expression(argument, env))
            if no_grad is not None:
                added = _cut(added, Cut(no_grad, NO_GRAD))
            env[name] = _merge(env.get(name, {}), added)
        return env

    def expression(self, node: ast.AST, env: dict[str, _Paths]) -> _Paths:
        if isinstance(node, ast.Name):
            return env.get(node.id, {})
        if isinstance(node, ast.Attribute):
            if node.attr == "data":
                return _cut(self.expression(node.value, env), Cut(node, DETACH))
            root = _self_attribute(node)
            if root is not None:
                return {root: LayerPath(True)} if root in self.own else {}
            return self.expression(node.value, env)
        if isinstance(node, ast.Subscript):
            root = _self_attribute(node)
            if root is not None:
                return {root: LayerPath(True)} if root in self.own else {}
            return self.expression(node.value, env)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("detach", "item", "tolist", "numpy"):
            reason = DETACH if node.func.attr == "detach" else NUMBER
            return _cut(self.expression(node.func.value, env), Cut(node, reason))
        if isinstance(node, ast.Call):
            returned = self.helper_output(node, env)
            if returned is not None:
                return returned
        if isinstance(node, (ast.Lambda, ast.FunctionDef)):
            return {}
        result: _Paths = {}
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.expr, ast.comprehension, ast.keyword)):
                result = _merge(result, self.expression(child, env))
        return result

    def helper_output(self, call: ast.Call, env: dict[str, _Paths]) -> _Paths | None:
        """Return the paths that a helper of this file returns (`self._project(x)`, `head(h)`), or None when not followed.

        Methods of the class and functions of the file are followed up to two calls deep, with their
        parameters bound to the arguments' paths. A function nested in the caller also sees the caller's
        variables. Calls with `*args` or `**kwargs` and recursive calls are not followed, and neither are
        generators, because this walk collects `return` values only.
        """
        if len(self.stack) > _MAX_HELPER_DEPTH:
            return None
        helper = self._helper(call)
        if helper is None or helper in self.stack:
            return None
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return None
        if any(isinstance(node, (ast.Yield, ast.YieldFrom)) for node in _walk_scope(helper)):
            return None
        arguments = helper.args
        parameters = [arg.arg for arg in [*arguments.posonlyargs, *arguments.args]]
        if isinstance(call.func, ast.Attribute) and parameters:
            parameters = parameters[1:]  # `self`
        if len(call.args) > len(parameters):
            return None
        nested = isinstance(self.flow.model.scope_of(helper).node, (ast.FunctionDef, ast.AsyncFunctionDef))
        start: dict[str, _Paths] = dict(env) if nested else {}
        for name in [*parameters, *(arg.arg for arg in arguments.kwonlyargs)]:
            start[name] = {}
        for name, argument in zip(parameters, call.args):
            start[name] = self.expression(argument, env)
        for keyword in call.keywords:
            start[keyword.arg] = self.expression(keyword.value, env)  # type: ignore[index]
        decorator = self.flow.grad_mode.disabling_decorator(helper)
        inner = LayerPaths(self.flow, self.own, (*self.stack, helper))
        # In a `@torch.no_grad()` helper, the decorator is where the gradient stops.
        inner.block(helper.body, start, decorator)
        return inner.output

    def _helper(self, call: ast.Call) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """Return the function of this file that `call` runs: `self.name(...)` in the same class, or `name(...)`."""
        func = call.func
        model = self.flow.model
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
            owner = model.enclosing_class(call)
            methods = [m for m in (owner.body if owner is not None else []) if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == func.attr]
            return methods[0] if len(methods) == 1 else None
        if isinstance(func, ast.Name):
            bindings = model.lookup(func.id, func)
            if len(bindings) == 1 and bindings[0].kind == "def":
                return bindings[0].node  # type: ignore[return-value]
        return None


# How many helper calls deep LayerPaths follows from `forward`.
_MAX_HELPER_DEPTH = 2


def _self_attribute(node: ast.AST) -> str | None:
    """Return `name` for `self.name`, `self.name.weight`, `self.name[0]` and the like."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        inner = node.value
        if isinstance(node, ast.Attribute) and isinstance(inner, ast.Name) and inner.id == "self":
            return node.attr
        node = inner
    return None


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        return [target.value.id]
    return []


def _merge(first: _Paths, second: _Paths) -> _Paths:
    if not first:
        return second
    if not second:
        return first
    merged = dict(first)
    for name, path in second.items():
        other = merged.get(name)
        merged[name] = path if other is None else LayerPath(other.live or path.live, other.cut or path.cut)
    return merged


def _merge_env(first: dict[str, _Paths], second: dict[str, _Paths]) -> dict[str, _Paths]:
    merged = dict(first)
    for name, paths in second.items():
        merged[name] = _merge(merged.get(name, {}), paths)
    return merged


def _cut(paths: _Paths, cut: Cut) -> _Paths:
    return {name: LayerPath(False, cut) if path.live else path for name, path in paths.items()}


# Tensor methods that pass the gradient on from the receiver and their tensor arguments.
_TENSOR_METHODS = frozenset(
    {
        "mean", "sum", "prod", "max", "min", "amax", "amin", "norm", "abs", "exp", "log", "log1p", "log2", "log10",
        "sqrt", "rsqrt", "pow", "square", "sigmoid", "tanh", "relu", "softmax", "log_softmax", "clone", "add", "sub",
        "mul", "div", "matmul", "mm", "bmm", "neg", "reciprocal", "squeeze", "unsqueeze", "view", "reshape", "flatten",
        "permute", "transpose", "t", "contiguous", "expand", "repeat", "narrow", "select", "split", "chunk", "unbind",
        "diag", "diagonal", "trace", "tril", "triu", "cumsum", "cumprod", "logsumexp", "std", "var", "median",
        "sort", "topk", "kthvalue", "mode", "clamp", "clip", "where", "lerp", "addmm", "dot", "outer", "cross",
        "sin", "cos", "tan", "atan", "atan2", "sinh", "cosh", "erf", "sign_", "mul_", "add_", "div_", "sub_",
        "clamp_", "masked_fill", "index_select", "new_tensor", "float", "double", "half", "to", "cuda", "cpu",
        "type_as", "view_as", "reshape_as", "expand_as", "roll", "flip", "unfold", "nan_to_num", "fill_diagonal_",
        "logit", "softplus", "exp_", "log_", "pow_", "maximum", "minimum", "fmax", "fmin", "smooth_l1_loss",
    }
)


def _is_loss_name(name: str) -> bool:
    """Tell whether a variable name marks a loss function (`criterion`, `loss_fn`, `mse_loss`)."""
    lowered = name.lower()
    return "criterion" in lowered or lowered.endswith(("loss", "loss_fn", "loss_func", "loss_function"))


def _requires_grad(values: ValueResolver, call: ast.Call) -> bool | None:
    keyword = next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
    if keyword is None:
        return None
    resolved = values.resolve(keyword)
    return resolved.value if resolved is not None and isinstance(resolved.value, bool) else None


def _element_at(value: ast.expr, index: tuple[int, ...]) -> ast.expr:
    node = value
    for position in index:
        if isinstance(node, (ast.Tuple, ast.List)) and position < len(node.elts) and not any(isinstance(e, ast.Starred) for e in node.elts):
            node = node.elts[position]
        else:
            return node  # `logits, aux = model(x)`: each element comes from the whole value
    return node


def _position(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _binding_position(binding: Binding) -> tuple[int, int]:
    """Return where a binding takes effect: after its right-hand side, or at a loop's target."""
    node = binding.node
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        return _position(node.target)
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        return (getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0)
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return _position(node.body[0]) if node.body else _position(node)
    return _position(node)


def _contains(outer: ast.AST, inner: ast.AST) -> bool:
    """Tell whether `inner` lies within the source range of `outer`."""
    start = _position(outer)
    end = (getattr(outer, "end_lineno", 0) or 0, getattr(outer, "end_col_offset", 0) or 0)
    return start <= _position(inner) and (getattr(inner, "end_lineno", 0) or 0, getattr(inner, "end_col_offset", 0) or 0) <= end


def _field_of(parent: ast.AST, child: ast.AST) -> str:
    for name in parent._fields:
        value = getattr(parent, name, None)
        # `in` compares AST nodes by identity, as they define no __eq__.
        if value is child or (isinstance(value, list) and child in value):
            return name
    return ""


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


def _method(node: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    found = None
    for statement in node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and statement.name == name:
            found = statement
    return found


_NESTED_SCOPES = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda})


def _scope_nodes(scope_node: ast.AST) -> list[ast.AST]:
    """Return the nodes of a function or module body in `_walk_scope` order, without nested functions' or classes' insides."""
    found = []
    stack = child_nodes(scope_node)
    while stack:
        node = stack.pop()
        found.append(node)
        node_type = type(node)
        if node_type in _NESTED_SCOPES:
            continue
        # child_nodes(node) inlined: this loop runs for every node of most functions.
        for name in child_fields(node_type):
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend([item for item in value if isinstance(item, ast.AST)])
    return found


def _group_returns(index: StatementIndex) -> dict[ast.AST, set[str]] | None:
    """Group the names in the `return` and `yield` values of one top-level statement by the function or class whose body has them.

    Returns None when a `yield` sits where the node index does not reach (see `_has_unindexed_yield`).
    """
    if _has_unindexed_yield(index):
        return None
    owners: dict[ast.AST, set[str]] = {}
    for node_type in (ast.Return, ast.Yield, ast.YieldFrom):
        for node in index.nodes_of(node_type):
            if node.value is None:  # type: ignore[attr-defined]
                continue
            owner = index.parent(node)
            while owner is not None and not isinstance(owner, (ast.Module, *_NESTED_SCOPES)):
                owner = index.parent(owner)
            if owner is not None:
                names = owners.setdefault(owner, set())
                names.update(name.id for name in walk(node.value) if isinstance(name, ast.Name))  # type: ignore[attr-defined]
    return owners


# Depends on one statement alone, so it is kept across edits (see memo.py).
_returns_by_owner = SubtreeMemo(_group_returns)


def _has_unindexed_yield(index: StatementIndex) -> bool:
    """Tell whether a `yield` sits in a parameter annotation or a comprehension target, which SemanticModel does not index."""
    hidden: list[ast.AST] = []
    for function_type in (ast.FunctionDef, ast.AsyncFunctionDef):
        for function in index.nodes_of(function_type):
            arguments = function.args  # type: ignore[attr-defined]
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
                if arg is not None and arg.annotation is not None:
                    hidden.append(arg.annotation)
    for comprehension_type in (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp):
        for comprehension in index.nodes_of(comprehension_type):
            hidden.extend(generator.target for generator in comprehension.generators)  # type: ignore[attr-defined]
    return any(isinstance(node, (ast.Yield, ast.YieldFrom)) for root in hidden for node in walk(root))


def _walk_scope(scope_node: ast.AST) -> Iterator[ast.AST]:
    """Yield the nodes of a function or module body, without descending into nested functions or classes."""
    yield from _scope_nodes(scope_node)


method = _method
walk_scope = _walk_scope


def _collect_class_attributes(node: ast.AST) -> dict[str, list[ast.expr]]:
    found: dict[str, list[ast.expr]] = {}
    for statement in subtree(node):
        if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                    found.setdefault(target.attr, []).append(statement.value)
    return found


# Depends on the class's own subtree only, so it is kept across edits (see memo.py).
_class_attributes = SubtreeMemo(_collect_class_attributes)
