"""The training-loop model: what one iteration of each training loop does, and in which order.

For every loop that trains (it calls `backward()` or steps an optimizer), the model lists the
training events of one iteration in execution order. Events are clearing gradients,
backpropagating, stepping an optimizer or a scheduler, the GradScaler calls, gradient clipping
and switching a model between `train()` and `eval()`. Calls to helper functions defined in the same file
(`train_step(model, batch, optimizer)`, `self.evaluate()`) are followed two levels deep, with
their parameters renamed to the caller's arguments, and so are LBFGS closures passed to
`optimizer.step(closure)`.

Each event records the loops and conditions around it. A rule can then ask whether it runs on
every iteration (gradient accumulation puts `step()` under `if (i + 1) % k == 0:`), whether it
sits in an inner loop (micro-batches), and whether two events are on mutually exclusive branches.

The model is built once per file from nodes collected during the single walk of the tree, and
only the ancestors of those nodes are visited afterwards, so its cost grows with the number of
training calls rather than with the size of the file.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gradsight.static import torch_api
from gradsight.static.kinds import PARAMETER_ITERATORS
from gradsight.static.registry import on

if TYPE_CHECKING:
    from gradsight.static.context import Context

_STATE = "training-loops"
_MAX_INLINE_DEPTH = 2

# Event kinds.
ZERO_GRAD = "zero_grad"
BACKWARD = "backward"
STEP = "step"
SCHEDULER_STEP = "scheduler_step"
UNSCALE = "unscale"
SCALER_UPDATE = "scaler_update"
CLIP = "clip"
EVAL = "eval"
TRAIN = "train"
# A call that cannot be followed (defined in another file) but whose name says it may train, such
# as `trainer.optimizer_step()`. Rules that report a missing event stay quiet when one is present.
OPAQUE = "opaque"
# Gradients computed without backward(): `torch.autograd.grad(...)`, or written with `p.grad = g`.
GRADIENTS = "gradients"

_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_CLIP_METHODS = frozenset({"clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_gradients"})
_IN_PLACE_UPDATES = frozenset({"add_", "sub_", "copy_", "addcdiv_", "addcmul_", "set_"})
# `Trainer` is gathered for its `gradient_clip_val` (GS107), not as a training event.
_NAMED_METHODS = frozenset(
    {"Trainer", "zero_grad", "backward", "manual_backward", "step", "grad", "unscale_", "update", "eval", "train", "zero_", "fill_"}
    | _CLIP_METHODS
    | _IN_PLACE_UPDATES
)
# `opt`, `optD`, `opt_g`, `optim`, `g_optim`, `d_opt`; names containing "optimizer" are checked separately.
_OPTIMIZER_NAME = re.compile(r"^[Oo]pt(?:im)?(?:s|[_0-9A-Z].*)?$|_opt(?:im)?s?$")
_SCHEDULER_NAME = re.compile(r"sched|lr_policy|warmup", re.IGNORECASE)
# Words in the name of a call defined elsewhere that may train: `trainer.optimizer_step()`,
# SAM's `optimizer.first_step()`, `update_weights(model)`.
_OPAQUE_WORDS = ("backward", "step", "optimize", "zero_grad", "update_weights", "apply_gradients")
_OPAQUE_PATTERN = re.compile("|".join(_OPAQUE_WORDS), re.IGNORECASE)
# Methods whose bound-method aliases are followed: `clear = optimizer.zero_grad`, then `clear()`.
_ALIASED_METHODS = frozenset({"zero_grad", "step"})


@dataclass(frozen=True)
class Branch:
    """One arm of a condition around an event: `index` 0 is the body of an `if`, 1 its `else`.

    Index -1 marks the statements after an `if` whose body ends in `continue`, `break` or
    `return`: they only run when that body did not.
    """

    node: ast.AST
    index: int


@dataclass(frozen=True)
class Event:
    """One training call, as it runs in the function or loop being analysed.

    `node` is the call or statement that performs it, possibly inside a helper function.
    `sites` are the calls that lead there from the analysed code (empty when it is written
    there directly). `path` lists the loops and conditions around the event, outermost first.
    `target` is the optimizer (for zero_grad, step and unscale), the model (for eval, train and
    a model's zero_grad) or the scaler (for update), written as in the analysed code.
    """

    kind: str
    node: ast.AST
    order: tuple[int, ...]
    path: tuple[ast.AST | Branch, ...] = ()
    sites: tuple[ast.Call, ...] = ()
    target: str | None = None
    # ZERO_GRAD: True when it clears a model's or a parameter's gradients rather than an optimizer's.
    on_model: bool = False
    # BACKWARD and STEP: the scaler of `scaler.scale(loss).backward()` or `scaler.step(optimizer)`.
    scaler: str | None = None
    # STEP: `optimizer.step(closure)`; `manual`: a hand-written update of `p.data`.
    closure: bool = False
    manual: bool = False
    # CLIP: the clipping call unscales scaled gradients itself (Accelerate, Fabric, Lightning).
    unscales: bool = False

    @property
    def report_node(self) -> ast.AST:
        """The node to put a finding on: the call written in the analysed code."""
        return self.sites[0] if self.sites else self.node

    @property
    def loops(self) -> tuple[ast.AST, ...]:
        return tuple(item for item in self.path if not isinstance(item, Branch))


@dataclass
class Sequence:
    """The events of one iteration of a loop (or of one call of a function that trains without a loop)."""

    root: ast.AST
    loop: ast.AST | None
    events: list[Event]

    def after_loop(self, event: Event) -> tuple[ast.AST | Branch, ...]:
        """Return the part of the event's path inside this sequence's loop."""
        if self.loop is None:
            return event.path
        path = event.path
        for position, item in enumerate(path):
            if item is self.loop:
                return path[position + 1 :]
        return path

    def is_conditional(self, event: Event) -> bool:
        """Tell whether the event may be skipped in an iteration: a condition lies between it and the loop."""
        return any(isinstance(item, Branch) for item in self.after_loop(event))

    def inner_loop(self, event: Event, training: set[ast.AST]) -> ast.AST | None:
        """Return the first nested training loop (inside this one) that repeats the event, if any."""
        for item in self.after_loop(event):
            if not isinstance(item, Branch) and item in training:
                return item
        return None

    def of_kind(self, *kinds: str) -> list[Event]:
        return [event for event in self.events if event.kind in kinds]

    def optimizers(self) -> set[str]:
        return {event.target for event in self.events if event.kind == STEP and event.target is not None}


def inside_one_call(*events: Event) -> bool:
    """Tell whether all the events run inside the same call of a helper, which is analysed on its own too."""
    first = events[0].sites[0] if events[0].sites else None
    return first is not None and all(event.sites and event.sites[0] is first for event in events)


def exclusive(first: Event, second: Event) -> bool:
    """Tell whether two events are on different arms of the same condition, so never both run."""
    arms = {item.node: item.index for item in first.path if isinstance(item, Branch)}
    for item in second.path:
        if isinstance(item, Branch) and item.node in arms and arms[item.node] != item.index:
            return True
    return False


@dataclass
class _Collected:
    """Nodes gathered during the walk of the tree, classified after it."""

    calls: list[ast.Call] = field(default_factory=list)
    assignments: list[ast.Assign | ast.AugAssign] = field(default_factory=list)
    local_calls: list[ast.Call] = field(default_factory=list)
    grad_reads: list[ast.Attribute] = field(default_factory=list)
    # Statements that read a `.grad` attribute, by id, so assignments need no walk of their own.
    grad_statements: set[int] = field(default_factory=set)
    # Assignments `name = optimizer.zero_grad` (or of `functools.partial(optimizer.zero_grad, ...)`), with the method each one binds.
    method_aliases: list[tuple[ast.Assign, ast.Attribute]] = field(default_factory=list)
    model: TrainingModel | None = None


def _collected(ctx: Context) -> _Collected:
    if _STATE not in ctx.state:
        ctx.state[_STATE] = _Collected()
    return ctx.state[_STATE]


@on(ast.Call)
def _collect_call(ctx: Context, call: ast.Call) -> None:
    func = call.func
    if isinstance(func, ast.Attribute):
        name = func.attr
        if isinstance(func.value, ast.Name) and func.value.id == "self" and name in ctx.model.functions:
            _collected(ctx).local_calls.append(call)
    elif isinstance(func, ast.Name):
        name = func.id
        if name in ctx.model.functions:
            _collected(ctx).local_calls.append(call)
    else:
        return
    if name in _NAMED_METHODS or _OPAQUE_PATTERN.search(name):
        _collected(ctx).calls.append(call)


@on(ast.Assign, ast.AugAssign)
def _collect_assignment(ctx: Context, node: ast.Assign | ast.AugAssign) -> None:
    if isinstance(node, ast.AugAssign):
        _collected(ctx).assignments.append(node)
        return
    method = _aliased_method(ctx, node.value)
    if method is not None and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        _collected(ctx).method_aliases.append((node, method))
    for target in node.targets:
        if isinstance(target, ast.Attribute) and target.attr in ("grad", "data"):
            _collected(ctx).assignments.append(node)
            return


@on(ast.Attribute)
def _collect_grad_read(ctx: Context, node: ast.Attribute) -> None:
    if node.attr == "grad" and isinstance(node.ctx, ast.Load):
        collected = _collected(ctx)
        collected.grad_reads.append(node)
        statement: ast.AST | None = node
        while statement is not None and not isinstance(statement, ast.stmt):
            statement = ctx.model.parent(statement)
        collected.grad_statements.add(id(statement))


def _aliased_method(ctx: Context, value: ast.expr) -> ast.Attribute | None:
    """Return `optimizer.zero_grad` when `value` is that bound method or `functools.partial` of it."""
    if isinstance(value, ast.Call) and value.args and ctx.model.call_qualname(value) == "functools.partial":
        value = value.args[0]
        if not (isinstance(value, ast.Attribute) and value.attr == "zero_grad"):
            return None  # A partial step may pass a closure, which the step event reads from the call.
    if isinstance(value, ast.Attribute) and value.attr in _ALIASED_METHODS:
        return value
    return None


def collected_calls(ctx: Context) -> list[ast.Call]:
    """Return the calls gathered during the walk whose name may be a training call (clipping included)."""
    return _collected(ctx).calls


def training_model(ctx: Context) -> TrainingModel:
    """Return the training-loop model of the file, building it on first use."""
    collected = _collected(ctx)
    if collected.model is None:
        collected.model = TrainingModel(ctx, collected)
    return collected.model


class TrainingModel:
    """Training events of every function and of the module body, and the loops that train."""

    def __init__(self, ctx: Context, collected: _Collected) -> None:
        self.ctx = ctx
        self.parents = ctx.model.parents
        self._blocks: dict[int, tuple[dict[int, int], list[ast.If | None]]] = {}
        self._sequences: list[Sequence] | None = None
        self._optimizer_models: dict[str, set[str] | None] = {}
        self.grad_reads = collected.grad_reads
        self._grad_statements = collected.grad_statements

        # Calls of bound-method aliases (`clear()` after `clear = optimizer.zero_grad`), with the method each one runs.
        self._aliased: dict[ast.Call, ast.Attribute] = {}
        for assignment, method in collected.method_aliases:
            name = assignment.targets[0].id  # type: ignore[attr-defined]
            for call in ctx.model.calls_named(name):
                if isinstance(call.func, ast.Name) and [b.node for b in ctx.model.lookup(name, call)] == [assignment]:
                    self._aliased[call] = method
        named = {id(call) for call in collected.calls}
        alias_calls = [call for call in self._aliased if id(call) not in named]

        # Events written directly in each function (or the module), with paths relative to it.
        self._own: dict[ast.AST, list[Event]] = {}
        for node in [*collected.calls, *alias_calls, *collected.assignments]:
            event = self._classify(node)
            if event is None:
                continue
            located = self._locate(event.node)
            if located is None:
                continue
            root, path = located
            self._own.setdefault(root, []).append(replace(event, path=path))

        # Calls of functions defined in this file, by the function that makes them.
        self._local_calls: dict[ast.AST, list[tuple[ast.Call, ast.AST, tuple]]] = {}
        for call in collected.local_calls:
            callee = self.callee(call)
            located = self._locate(call)
            if callee is None or located is None:
                continue
            root, path = located
            self._local_calls.setdefault(root, []).append((call, callee, path))

        self.callers: dict[ast.AST, set[ast.AST]] = {}
        self.steps_by_target: dict[str, list[tuple[ast.AST, Event]]] = {}
        self.events: dict[ast.AST, list[Event]] = {}
        for root in {*self._own, *self._local_calls}:
            self.events[root] = self._expand(root, 0, (root,))
        self.events = {root: events for root, events in self.events.items() if events}
        for root, events in self.events.items():
            for event in events:
                if event.kind == STEP and event.target is not None:
                    self.steps_by_target.setdefault(event.target, []).append((root, event))
        self.training_loops = {
            loop for events in self.events.values() for event in events if event.kind in (BACKWARD, STEP) for loop in event.loops
        }

    # Sequences

    def sequences(self) -> list[Sequence]:
        """Return one sequence per training loop, outermost first, and one per function that trains without a loop."""
        if self._sequences is None:
            self._sequences = list(self._build_sequences())
        return self._sequences

    def _build_sequences(self) -> Iterator[Sequence]:
        for root, events in self.events.items():
            loops: list[ast.AST] = []
            for event in events:
                for loop in event.loops:
                    if loop in self.training_loops and loop not in loops:
                        loops.append(loop)
            for loop in loops:
                yield Sequence(root, loop, [event for event in events if loop in event.path])
            flat = [event for event in events if not event.loops]
            if any(event.kind in (BACKWARD, STEP) for event in flat):
                yield Sequence(root, None, flat)

    def outermost_sequences(self) -> Iterator[Sequence]:
        """Yield, per function, the sequences of training loops that no other training loop encloses."""
        for sequence in self.sequences():
            if sequence.loop is None:
                continue
            enclosing = next(event.loops for event in sequence.events)
            position = enclosing.index(sequence.loop)
            if not any(loop in self.training_loops for loop in enclosing[:position]):
                yield sequence

    def context_of(self, sequence: Sequence) -> list[Event]:
        """Return the events that may supply one missing from a loop: the loop's own, those outside any
        loop in its function, and those of the functions that call it (other loops do not count)."""
        outside = [event for event in self.events[sequence.root] if not event.loops]
        return sequence.events + outside + self.caller_events(sequence.root)

    def caller_events(self, root: ast.AST) -> list[Event]:
        """Return the events of the functions that call `root` (a function of this file)."""
        found: list[Event] = []
        for caller in self.callers.get(root, ()):
            found.extend(self.events.get(caller, ()))
        return found

    def reads_gradients(self, loop: ast.AST) -> bool:
        """Tell whether `.grad` is read inside the loop (gradient inspection, adversarial inputs)."""
        first, last = loop.lineno, loop.end_lineno or loop.lineno  # type: ignore[attr-defined]
        return any(first <= node.lineno <= last for node in self.grad_reads)

    def optimizer_models(self, optimizer: str) -> set[str] | None:
        """Return the root names of the models whose `parameters()` the optimizer was built over, or None if unknown."""
        if optimizer not in self._optimizer_models:
            self._optimizer_models[optimizer] = self._find_optimizer_models(optimizer)
        return self._optimizer_models[optimizer]

    def clears(self, zero: Event, optimizer: str, single_optimizer: bool) -> bool | None:
        """Tell whether a zero_grad event clears the optimizer's gradients: True, False, or None (may be)."""
        if not zero.on_model:
            if zero.target == optimizer:
                return True
            return None if zero.target is None else False
        models = self.optimizer_models(optimizer)
        if zero.target is not None and models is not None:
            return zero.target.split(".")[0].split("[")[0] in models
        return True if single_optimizer else None

    # Helper functions

    def callee(self, call: ast.Call) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """Return the function of this file that `call` runs, when that is certain."""
        func = call.func
        if isinstance(func, ast.Name):
            bindings = self.ctx.model.lookup(func.id, call)
            if len(bindings) == 1 and bindings[0].kind == "def":
                return bindings[0].node  # type: ignore[return-value]
            return None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
            owner = self.ctx.model.enclosing_class(call)
            if owner is None:
                return None
            methods = [s for s in owner.body if isinstance(s, _FUNCTIONS) and s.name == func.attr]
            return methods[0] if len(methods) == 1 else None
        return None

    def _expand(self, root: ast.AST, depth: int, stack: tuple[ast.AST, ...]) -> list[Event]:
        """Return the events of `root` in execution order, with called helpers' events in place."""
        events = list(self._own.get(root, ()))
        if depth < _MAX_INLINE_DEPTH:
            for call, callee, path in self._local_calls.get(root, ()):
                if callee in stack:
                    continue
                inner = self._expand(callee, depth + 1, (*stack, callee))
                if not inner:
                    continue
                if depth == 0:
                    self.callers.setdefault(callee, set()).add(root)
                renames = _renames(call, callee)
                prefix = (call.lineno, call.col_offset, 0)
                for event in inner:
                    events.append(
                        replace(
                            event,
                            order=prefix + event.order,
                            path=path + event.path,
                            sites=(call, *event.sites),
                            target=_rename(event.target, renames),
                            scaler=_rename(event.scaler, renames),
                        )
                    )
            for event in list(events):
                if event.kind == STEP and event.closure and not event.sites:
                    events.extend(self._closure_events(root, event, depth, stack))
        events.sort(key=lambda event: event.order)
        return events

    def _closure_events(self, root: ast.AST, step: Event, depth: int, stack: tuple[ast.AST, ...]) -> list[Event]:
        # `optimizer.step(closure)` runs the closure (zero_grad, forward, backward) before updating.
        call = step.node
        argument = call.args[0] if isinstance(call, ast.Call) and call.args else None
        if not isinstance(argument, ast.Name):
            return []
        bindings = self.ctx.model.lookup(argument.id, argument)
        if len(bindings) != 1 or bindings[0].kind != "def" or bindings[0].node in stack:
            return []
        closure = bindings[0].node
        inner = self._expand(closure, depth + 1, (*stack, closure))
        prefix = step.order + (-1,)
        return [replace(event, order=prefix + event.order, path=step.path + event.path) for event in inner]

    # Where an event runs

    def _locate(self, node: ast.AST) -> tuple[ast.AST, tuple[ast.AST | Branch, ...]] | None:
        """Return the function (or module) that runs `node` and the loops and conditions around it there.

        Returns None for code that does not run in place: lambdas and class bodies.
        """
        path: list[ast.AST | Branch] = []
        child = node
        parent = self.parents.get(child)
        while parent is not None:
            if isinstance(parent, (ast.Lambda, ast.ClassDef)):
                return None
            if isinstance(parent, (*_FUNCTIONS, ast.Module)):
                self._add_early_exit(parent, child, path)
                path.reverse()
                return parent, tuple(path)
            if isinstance(parent, _LOOPS) and (self._in_block(parent.body, child) or self._in_block(parent.orelse, child)):
                self._add_early_exit(parent, child, path)
                path.append(parent)
            elif isinstance(parent, ast.If) and child is not parent.test:
                self._add_early_exit(parent, child, path)
                path.append(Branch(parent, 0 if self._in_block(parent.body, child) else 1))
            elif isinstance(parent, ast.IfExp) and child is not parent.test:
                path.append(Branch(parent, 0 if child is parent.body else 1))
            elif isinstance(parent, ast.match_case):
                path.append(Branch(self.parents.get(parent, parent), id(parent)))
            elif isinstance(parent, ast.ExceptHandler):
                path.append(Branch(parent, 0))
            elif isinstance(parent, ast.BoolOp) and child is not parent.values[0]:
                path.append(Branch(parent, 0))
            elif isinstance(parent, (ast.With, ast.AsyncWith, ast.Try)) or _is_try_star(parent):
                self._add_early_exit(parent, child, path)
            child, parent = parent, self.parents.get(parent)
        return None

    def _add_early_exit(self, block_owner: ast.AST, child: ast.AST, path: list) -> None:
        # Statements after `if cond: continue` in the same block run only when the condition is false.
        if not isinstance(child, ast.stmt):
            return
        for block in _blocks(block_owner):
            positions, exits = self._block_index(block)
            position = positions.get(id(child))
            if position is None:
                continue
            if exits[position] is not None:
                path.append(Branch(exits[position], -1))
            return

    def _block_index(self, block: list[ast.stmt]) -> tuple[dict[int, int], list[ast.If | None]]:
        """Return the position of each statement of a block, and the last early-exit `if` before each one."""
        key = id(block)
        if key not in self._blocks:
            positions = {}
            exits: list[ast.If | None] = []
            last: ast.If | None = None
            for index, statement in enumerate(block):
                positions[id(statement)] = index
                exits.append(last)
                if isinstance(statement, ast.If) and _ends_in_exit(statement.body) != _ends_in_exit(statement.orelse):
                    last = statement
            self._blocks[key] = (positions, exits)
        return self._blocks[key]

    def _in_block(self, block: list[ast.stmt], child: ast.AST) -> bool:
        return id(child) in self._block_index(block)[0]

    # Classification

    def _classify(self, node: ast.AST) -> Event | None:
        order = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        if isinstance(node, ast.Call):
            return self._classify_call(node, order)
        return self._classify_assignment(node, order)  # type: ignore[arg-type]

    def _classify_call(self, call: ast.Call, order: tuple[int, ...]) -> Event | None:
        func = call.func
        qualname = self.ctx.model.call_qualname(call)
        aliased = self._aliased.get(call)
        if aliased is not None:
            func, qualname = aliased, None  # `clear()` runs `optimizer.zero_grad()`
        if qualname == "torch.autograd.backward":
            return Event(BACKWARD, call, order)
        if qualname == "torch.autograd.grad":
            return Event(GRADIENTS, call, order)
        if qualname is not None and qualname.startswith("torch.nn.utils.") and qualname.rsplit(".", 1)[-1] in _CLIP_METHODS:
            return Event(CLIP, call, order)
        if not isinstance(func, ast.Attribute):
            return self._opaque(call, order, qualname)
        method, receiver = func.attr, func.value

        if method == "zero_grad":
            if self.is_optimizer(receiver):
                return Event(ZERO_GRAD, call, order, target=_text(receiver))
            return Event(ZERO_GRAD, call, order, target=self._model_of(receiver), on_model=True)
        if method in ("backward", "manual_backward"):
            scaled = isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute) and receiver.func.attr == "scale"
            scaler = _text(receiver.func.value) if scaled else None  # type: ignore[union-attr]
            return Event(BACKWARD, call, order, scaler=scaler)

        if method == "step":
            return self._classify_step(call, receiver, order)
        if method == "unscale_" and call.args:
            return Event(UNSCALE, call, order, target=_text(call.args[0]), scaler=_text(receiver))
        if method == "update" and self.is_scaler(receiver):
            return Event(SCALER_UPDATE, call, order, target=_text(receiver))
        if method in _CLIP_METHODS:
            if qualname is None and not _is_torch_expression(receiver):
                return Event(CLIP, call, order, unscales=True)
            return Event(CLIP, call, order)

        if method in ("eval", "train"):
            return self._classify_mode(call, method, receiver, order)
        if method in ("zero_", "fill_") and _ends_with_grad(receiver):
            return Event(ZERO_GRAD, call, order, target=self._parameter_owner(receiver), on_model=True)
        if method in _IN_PLACE_UPDATES and not _mentions_grad(receiver) and any(_mentions_grad(a) for a in call.args):
            if _text(receiver).endswith(".data") or self._under_no_grad(call):
                return Event(STEP, call, order, target="<manual update>", manual=True)
            return None
        return self._opaque(call, order, qualname)

    def _classify_step(self, call: ast.Call, receiver: ast.expr, order: tuple[int, ...]) -> Event | None:
        if self.is_scaler(receiver):
            target = _text(call.args[0]) if call.args else None
            return Event(STEP, call, order, target=target, scaler=_text(receiver))
        if self.is_scheduler(receiver):
            return Event(SCHEDULER_STEP, call, order, target=_text(receiver))
        if self.is_optimizer(receiver):
            closure = bool(call.args) or any(keyword.arg == "closure" for keyword in call.keywords)
            return Event(STEP, call, order, target=_text(receiver), closure=closure)
        if "env" in _root(receiver).lower():
            return None  # `env.step(action)` in reinforcement learning.
        # `model_engine.step()` (DeepSpeed) and other steps of objects that may wrap an optimizer.
        return Event(OPAQUE, call, order, target=_text(receiver))

    def _classify_mode(self, call: ast.Call, method: str, receiver: ast.expr, order: tuple[int, ...]) -> Event | None:
        kind = self.ctx.kinds.kind(receiver)
        if kind is not None and not kind.is_module:
            return None
        if method == "eval" and not call.args and not call.keywords:
            return Event(EVAL, call, order, target=_text(receiver))
        if method == "train":
            flag = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "mode"), None)
            if isinstance(flag, ast.Constant) and flag.value is False:
                return Event(EVAL, call, order, target=_text(receiver))
            return Event(TRAIN, call, order, target=_text(receiver))
        return None

    def _opaque(self, call: ast.Call, order: tuple[int, ...], qualname: str | None) -> Event | None:
        if qualname is not None and qualname.startswith("torch."):
            return None
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if self.callee(call) is not None:
            return None
        if _OPAQUE_PATTERN.search(name):
            return Event(OPAQUE, call, order, target=name)
        return None

    def _classify_assignment(self, node: ast.Assign | ast.AugAssign, order: tuple[int, ...]) -> Event | None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "grad" and isinstance(node.value, ast.Constant) and node.value.value is None:
                return Event(ZERO_GRAD, node, order, target=self._parameter_owner(target), on_model=True)
            if isinstance(target, ast.Attribute) and target.attr == "grad" and isinstance(node, ast.Assign):
                return Event(GRADIENTS, node, order)
        target = targets[0] if len(targets) == 1 else None
        if target is None or id(node) not in self._grad_statements:
            return None
        if _mentions_grad(target) or not _mentions_grad(node.value):
            return None
        if _text(target).endswith(".data") or (isinstance(node, ast.AugAssign) and self._under_no_grad(node)):
            return Event(STEP, node, order, target="<manual update>", manual=True)
        return None

    # What a receiver is

    def is_optimizer(self, expr: ast.expr) -> bool:
        value = self._assigned_value(expr)
        if isinstance(value, ast.Call):
            qualname = self.ctx.model.call_qualname(value)
            if qualname in torch_api.OPTIMIZERS:
                return True
            if qualname is not None and qualname.startswith(torch_api.SCHEDULER_PREFIXES):
                return False
        return looks_like_optimizer(_last_name(expr))

    def is_scheduler(self, expr: ast.expr) -> bool:
        value = self._assigned_value(expr)
        if isinstance(value, ast.Call):
            qualname = self.ctx.model.call_qualname(value)
            if qualname is not None and qualname.startswith(torch_api.SCHEDULER_PREFIXES):
                return True
        return bool(_SCHEDULER_NAME.search(_last_name(expr)))

    def is_scaler(self, expr: ast.expr) -> bool:
        value = self._assigned_value(expr)
        if isinstance(value, ast.Call) and self.ctx.model.call_qualname(value) in torch_api.GRAD_SCALERS:
            return True
        return "scaler" in _last_name(expr).lower()

    def scaler_disabled(self, scaler: str, near: ast.AST) -> bool:
        """Tell whether the scaler is built with `enabled=False`, so that scale() and step() pass through."""
        value = self._value_of_name(scaler, near)
        if not isinstance(value, ast.Call):
            return False
        enabled = next((k.value for k in value.keywords if k.arg == "enabled"), None)
        resolved = self.ctx.values.resolve(enabled) if enabled is not None else None
        return resolved is not None and resolved.value is False

    def _assigned_value(self, expr: ast.expr) -> ast.AST | None:
        return self._value_of_name(expr.id, expr) if isinstance(expr, ast.Name) else None

    def _value_of_name(self, name: str, near: ast.AST) -> ast.AST | None:
        """Return the value of the single assignment of `name` visible at `near`."""
        bindings = self.ctx.model.lookup(name, near)
        if len(bindings) == 1 and bindings[0].kind == "assign" and not bindings[0].index:
            return bindings[0].value
        return None

    def _model_of(self, receiver: ast.expr) -> str | None:
        return _text(receiver) if isinstance(receiver, (ast.Name, ast.Attribute, ast.Subscript)) else None

    def _parameter_owner(self, expr: ast.expr) -> str | None:
        """Return the model whose parameter `p` is in `p.grad` (the `m` of `for p in m.parameters()`)."""
        while isinstance(expr, ast.Attribute):
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        bindings = self.ctx.model.lookup(expr.id, expr)
        if len(bindings) != 1 or bindings[0].kind != "for":
            return None
        iterable = bindings[0].value
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute) and iterable.func.attr in PARAMETER_ITERATORS:
            return _text(iterable.func.value)
        return None

    def _under_no_grad(self, node: ast.AST) -> bool:
        for ancestor in self.ctx.model.ancestors(node):
            if isinstance(ancestor, _FUNCTIONS):
                return any(self.ctx.model.qualname(d.func if isinstance(d, ast.Call) else d) in torch_api.NO_GRAD for d in ancestor.decorator_list)
            if isinstance(ancestor, (ast.With, ast.AsyncWith)):
                for item in ancestor.items:
                    context = item.context_expr
                    if isinstance(context, ast.Call) and self.ctx.model.call_qualname(context) in torch_api.NO_GRAD:
                        return True
        return False

    def _find_optimizer_models(self, optimizer: str) -> set[str] | None:
        if not optimizer.isidentifier():
            return None
        calls = []
        for _, event in self.steps_by_target.get(optimizer, ()):
            if not event.sites:
                value = self._value_of_name(optimizer, event.node)
                if isinstance(value, ast.Call) and self.ctx.model.call_qualname(value) in torch_api.OPTIMIZERS:
                    calls.append(value)
        if not calls:
            return None
        models: set[str] = set()
        for call in calls:
            params = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "params"), None)
            found = parameter_roots(self.ctx, params, 0) if params is not None else None
            if not found:
                return None
            models |= found
        return models


def looks_like_optimizer(name: str) -> bool:
    """Tell whether a variable name is one that scripts give optimizers: `optimizer`, `opt_g`, `optimizerD`."""
    lowered = name.lower()
    named = "optimizer" in lowered or "optimiser" in lowered or bool(_OPTIMIZER_NAME.search(name))
    return named and not _SCHEDULER_NAME.search(name)


def parameter_roots(ctx: Context, expr: ast.AST, depth: int = 0) -> set[str] | None:
    """Return the root names of `m` in every `m.parameters()` that an optimizer's params expression contains.

    Follows variables, `list(...)`, `itertools.chain(...)`, `a + b`, comprehensions and
    parameter-group dicts. Returns None when no `parameters()` call is found.
    """
    if depth > 8:
        return None
    roots: set[str] = set()
    parts: list[ast.AST] = []
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr in PARAMETER_ITERATORS:
        roots.add(_root(expr.func.value))
    elif isinstance(expr, ast.Call):
        parts = list(expr.args)
    elif isinstance(expr, ast.Name):
        bindings = ctx.model.lookup(expr.id, expr)
        if len(bindings) == 1 and bindings[0].kind == "assign" and bindings[0].value is not None and not bindings[0].index:
            parts = [bindings[0].value]
    elif isinstance(expr, (ast.List, ast.Tuple)):
        parts = [element.value if isinstance(element, ast.Starred) else element for element in expr.elts]
    elif isinstance(expr, ast.Dict):
        parts = [value for key, value in zip(expr.keys, expr.values) if isinstance(key, ast.Constant) and key.value == "params"]
    elif isinstance(expr, ast.BinOp):
        parts = [expr.left, expr.right]
    elif isinstance(expr, (ast.ListComp, ast.GeneratorExp)):
        parts = [expr.generators[0].iter]
    for part in parts:
        found = parameter_roots(ctx, part, depth + 1)
        if found:
            roots |= found
    return roots or None


def _renames(call: ast.Call, callee: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, str]:
    """Map the callee's parameter names to the caller's argument expressions (names and attributes only)."""
    parameters = [arg.arg for arg in [*callee.args.posonlyargs, *callee.args.args]]
    if isinstance(call.func, ast.Attribute) and parameters and parameters[0] == "self":
        parameters = parameters[1:]
    renames: dict[str, str] = {}
    for name, argument in zip(parameters, call.args):
        if isinstance(argument, ast.Starred):
            break  # `f(*args)`: the later parameters cannot be matched to arguments.
        if isinstance(argument, (ast.Name, ast.Attribute)):
            renames[name] = _text(argument)
    for keyword in call.keywords:
        if keyword.arg and isinstance(keyword.value, (ast.Name, ast.Attribute)):
            renames[keyword.arg] = _text(keyword.value)
    return renames


def _rename(text: str | None, renames: dict[str, str]) -> str | None:
    if text is None or not renames:
        return text
    root = _root_of_text(text)
    if root in renames:
        return renames[root] + text[len(root) :]
    return text


def _root_of_text(text: str) -> str:
    return re.split(r"[.\[(]", text, maxsplit=1)[0]


def _root(expr: ast.AST) -> str:
    while isinstance(expr, (ast.Attribute, ast.Subscript, ast.Call)):
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return expr.id if isinstance(expr, ast.Name) else ""


def model_root(text: str | None) -> str | None:
    """Return the variable a model expression starts from: `model` for `model.module`."""
    return None if text is None else _root_of_text(text)


def _last_name(expr: ast.AST) -> str:
    """Return the name a variable or attribute is known by: `optimizer` for `self.optimizer`."""
    if isinstance(expr, ast.Attribute):
        return expr.attr
    if isinstance(expr, ast.Name):
        return expr.id
    return ""


def _text(expr: ast.AST) -> str:
    return ast.unparse(expr)


def _is_torch_expression(expr: ast.AST) -> bool:
    return _root(expr) in ("torch", "nn", "utils")


def _ends_with_grad(expr: ast.AST) -> bool:
    while isinstance(expr, ast.Attribute) and expr.attr == "data":
        expr = expr.value
    return isinstance(expr, ast.Attribute) and expr.attr == "grad"


def _mentions_grad(expr: ast.AST) -> bool:
    return any(isinstance(node, ast.Attribute) and node.attr == "grad" for node in ast.walk(expr))


def _blocks(owner: ast.AST) -> list[list[ast.stmt]]:
    blocks = []
    for name in ("body", "orelse", "finalbody"):
        block = getattr(owner, name, None)
        if isinstance(block, list):
            blocks.append(block)
    return blocks


def _ends_in_exit(block: list[ast.stmt]) -> bool:
    return bool(block) and isinstance(block[-1], (ast.Continue, ast.Break, ast.Return, ast.Raise))


def _is_try_star(node: ast.AST) -> bool:
    return type(node).__name__ == "TryStar"
