"""Registration of rule handlers: each rule module declares which node types it inspects."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradsight.static.context import Context

NodeHandler = Callable[["Context", ast.AST], None]
FileHandler = Callable[["Context"], None]

NODE_HANDLERS: dict[type[ast.AST], list[NodeHandler]] = defaultdict(list)
FILE_HANDLERS: list[FileHandler] = []


def on(*node_types: type[ast.AST]) -> Callable[[NodeHandler], NodeHandler]:
    """Register a function to be called with every node of the given types, in one walk of the tree."""

    def register(handler: NodeHandler) -> NodeHandler:
        for node_type in node_types:
            NODE_HANDLERS[node_type].append(handler)
        return handler

    return register


def after_walk(handler: FileHandler) -> FileHandler:
    """Register a function to be called once the walk is done, for rules that combine facts from the whole file."""
    FILE_HANDLERS.append(handler)
    return handler
