"""The speed-ups of the static checker must not change its results.

Incremental parsing (gradsight.static.incremental) re-parses only the top-level statement an
edit touched. These tests compare it with a full `ast.parse` and a full check on random
one-character edits of the training scripts in tests/cases/static/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradsight.static import check_source, incremental

SCRIPTS = sorted((Path(__file__).parent / "cases" / "static").glob("*.py"))
# Characters that typing usually inserts, plus ones that open strings, brackets, blocks and continuations.
EDIT_CHARACTERS = st.sampled_from(list("0123456789abxyz_ .,:;()[]{}'\"#\\=+-*@\n\t"))


def _dump(tree: ast.AST) -> str:
    return ast.dump(tree, include_attributes=True)


def _full_parse(source: str) -> str | type[BaseException]:
    try:
        return _dump(ast.parse(source, type_comments=False))
    except (SyntaxError, ValueError) as error:
        return type(error)


def _incremental_parse(source: str) -> str | type[BaseException]:
    try:
        return _dump(incremental.parse(source))
    except (SyntaxError, ValueError) as error:
        return type(error)


def _full_check(source: str):
    incremental.clear_cache()
    return check_source(source)


@st.composite
def edits(draw):
    """Draw a script and a one-character insertion, deletion or replacement in it."""
    script = draw(st.sampled_from(SCRIPTS))
    text = script.read_text()
    position = draw(st.integers(min_value=0, max_value=len(text) - 1))
    operation = draw(st.sampled_from(["insert", "delete", "replace"]))
    character = draw(EDIT_CHARACTERS)
    if operation == "insert":
        edited = text[:position] + character + text[position:]
    elif operation == "delete":
        edited = text[:position] + text[position + 1 :]
    else:
        edited = text[:position] + character + text[position + 1 :]
    return text, edited


def test_scripts_found():
    assert len(SCRIPTS) >= 5


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits())
def test_incremental_parse_matches_full_parse(edit):
    original, edited = edit
    incremental.clear_cache()
    incremental.parse(original)
    assert _incremental_parse(edited) == _full_parse(edited)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits())
def test_incremental_check_matches_full_check(edit):
    original, edited = edit
    expected = _full_check(edited)
    incremental.clear_cache()
    check_source(original)
    assert check_source(edited) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edits(), min_size=2, max_size=5))
def test_incremental_parse_after_edit_sequence(edit_list):
    # Each parse starts from the trees that the previous incremental parses left in the cache.
    incremental.clear_cache()
    for original, edited in edit_list:
        assert _incremental_parse(original) == _full_parse(original)
        assert _incremental_parse(edited) == _full_parse(edited)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("def f():\n    x = 1\ny = 2\n", "def f():\n    x = 1\n    y = 2\n"),  # a statement indented into the function above
        ("def f():\n x = 1\ny = 2\n", "def f():\n x = 1\n y = 2\n"),
        ("x = 1\ny = 2\n", "x = 1 \\\ny = 2\n"),  # a backslash continuation joins the next statement
        ("x = 1\n\ny = 2\n", "x = 1\n\\\ny = 2\n"),
        ("if a:\n    pass\nelse_ = 1\n", "if a:\n    pass\nelse: 1\n"),
        ("x = 1\ny = 2\n", "x = (1\ny = 2\n"),
        ("x = 1\ny = 2\n", "x = '''1\ny = 2\n"),
        ("x = 1; y = 2\nz = 3\n", "x = 1; y = 3\nz = 3\n"),
        ("@d\ndef f():\n    pass\nx = 1\n", "@e\ndef f():\n    pass\nx = 1\n"),
        ("x = 1\r\ny = 2\r\n", "x = 2\r\ny = 2\r\n"),
        ("x = 1\ry = 2\r", "x = 2\ry = 2\r"),
        ("# comment\n\nx = 1\n", "# commentx\n\nx = 1\n"),
        ("x = 1\n# last\n", "x = 1\n# last \\\n"),
        ("x = 1\ny = 2", "x = 1\ny = 3"),
        ("x = 1\ny = 2\n", "x = 1\n#y = 2\n"),
    ],
)
def test_incremental_parse_edge_cases(before, after):
    incremental.clear_cache()
    assert _incremental_parse(before) == _full_parse(before)
    assert _incremental_parse(after) == _full_parse(after)


def test_incremental_parse_reuses_unchanged_statements():
    source = "import torch\n\n\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n"
    incremental.clear_cache()
    before = incremental.parse(source)
    after = incremental.parse(source.replace("return 2", "return 3"))
    assert after.body[0] is before.body[0]
    assert after.body[1] is before.body[1]
    assert after.body[2] is not before.body[2]
    assert _dump(after) == _full_parse(source.replace("return 2", "return 3"))


def _called_names(model) -> list[str]:
    names = []
    for call in model.nodes_of(ast.Call):
        func = call.func
        names.append(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return sorted(set(names))


def _model_summary(source: str) -> tuple:
    """Describe a semantic model by positions and names only, so that models of different trees compare."""
    from gradsight.static.semantic import SemanticModel

    model = SemanticModel(incremental.parse(source))

    def where(node):
        return (type(node).__name__, getattr(node, "lineno", None), getattr(node, "col_offset", None))

    def bindings(scope):
        return [(name, [(b.kind, where(b.node), b.qualname) for b in found]) for name, found in scope.bindings.items()]

    return (
        [where(node) for node in model.nodes],
        [(where(node), where(parent)) for node, parent in model.parents.items() if hasattr(node, "lineno")],
        sorted((where(node), bindings(scope), sorted(scope.global_names)) for node, scope in model.scopes.items() if node is not model.tree),
        bindings(model.module_scope),
        {name: [where(call) for call in model.calls_named(name)] for name in _called_names(model)},
        {name: [where(node) for node in nodes] for name, nodes in model.classes.items()},
        {name: [where(node) for node in nodes] for name, nodes in model.functions.items()},
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits())
def test_reused_semantic_model_matches_fresh(edit):
    # After an edit, the model reuses the indexes of the statements the incremental parse kept.
    original, edited = edit
    try:
        ast.parse(edited)
    except (SyntaxError, ValueError):
        return
    incremental.clear_cache()
    fresh = _model_summary(edited)
    incremental.clear_cache()
    incremental.parse(original)
    _model_summary(original)
    assert _model_summary(edited) == fresh


@pytest.mark.parametrize(
    ("import_line", "expected"),
    [
        ("from torch.optim import SGD", ["GS101"]),
        ("from mylib.optim import SGD", []),  # another SGD: no torch learning-rate rule applies
        ("from torch.optim import Adam as SGD", ["GS101"]),
    ],
)
def test_results_follow_an_edited_import_in_another_statement(import_line, expected):
    # Qualified names found for unchanged statements are reused only while the module's imports are the same.
    body = "\n\ndef train(model):\n    opt = SGD(model.parameters(), lr=1e-12)\n    return opt\n"
    incremental.clear_cache()
    for first in ("from torch.optim import SGD", "from mylib.optim import SGD", import_line):
        check_source(first + body)
    assert [finding.code for finding in check_source(import_line + body).findings] == expected


def test_results_follow_an_alias_edited_in_another_statement():
    body = "\n\ndef train(model):\n    return Optim(model.parameters(), lr=1e-12)\n"
    incremental.clear_cache()
    assert [f.code for f in check_source("import torch\nOptim = torch.optim.SGD" + body).findings] == ["GS101"]
    assert [f.code for f in check_source("import torch\nOptim = torch.optim.XYZ" + body).findings] == []
    assert [f.code for f in check_source("import torch\nOptim = torch.optim.SGD" + body).findings] == ["GS101"]
