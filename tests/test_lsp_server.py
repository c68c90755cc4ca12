"""The language server, driven as a subprocess over stdio the way an editor drives it."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types

from gradsight.findings import Finding, RelatedLocation, Severity, SourceError, Span
from gradsight.lsp.convert import LineIndex, finding_to_diagnostic, source_error_to_diagnostic
from gradsight.static import RULES, rule_doc_path
from lsp_faulty_core import RAISE_MARKER, SLOW_MARKER
from lsp_session import (
    LspSession,
    document_uri,
    end_session,
    find_position,
    run_scenario,
    start_session,
    utf16_length,
)

TINY_LR_SCRIPT = """\
import torch
import torch.nn as nn

model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-10)


def train_step(inputs, labels):
    optimizer.zero_grad()
    loss = criterion(model(inputs), labels)
    loss.backward()
    optimizer.step()
    return loss.item()
"""

FIXED_SCRIPT = TINY_LR_SCRIPT.replace("lr=1e-10", "lr=1e-2")

# The statement `loss = criterion(` is cut off in the middle of an edit.
BROKEN_SCRIPT = TINY_LR_SCRIPT.replace("loss = criterion(model(inputs), labels)", "loss = criterion(")

# A parameter group with a name is ordinary PyTorch. The name puts non-ASCII text and a character
# outside the Basic Multilingual Plane (UTF-16 length 2) before the finding on the same line.
NON_ASCII_SCRIPT = TINY_LR_SCRIPT.replace(
    "torch.optim.SGD(model.parameters(), lr=1e-10)",
    'torch.optim.SGD([{"params": model.parameters(), "name": "Kopf für Ärger 🙂"}], lr=1e-10)',
)

SYNTAX_ERROR_SUFFIX = "(gradsight resumes checking when the file parses)"
FAST_DEBOUNCE = {"debounceMs": 50}


def gs101_diagnostics(diagnostics) -> list[types.Diagnostic]:
    return [diagnostic for diagnostic in diagnostics if diagnostic.code == "GS101"]


def test_server_initialize_shutdown_exit():
    async def scenario(session: LspSession) -> None:
        result = session.initialize_result
        assert result.server_info.name == "gradsight"
        sync = result.capabilities.text_document_sync
        assert sync.open_close is True
        assert sync.change == types.TextDocumentSyncKind.Incremental
        assert sync.save

        started = await session.wait_for_log_message(
            lambda message: "started for client gradsight-tests 1.0" in message.message
        )
        assert started.type == types.MessageType.Info
        await session.wait_for_log_message(lambda message: "debounceMs=300" in message.message)

        assert await session.shutdown_and_exit() == 0
        assert "Traceback" not in session.stderr

    run_scenario(scenario)


def test_server_exit_without_shutdown_fails():
    async def scenario(session: LspSession) -> None:
        session.client.exit(None)
        assert await asyncio.wait_for(session.process.wait(), 10) == 1

    run_scenario(scenario)


def test_did_open_publishes_gs101(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")
    line, text, column = find_position(TINY_LR_SCRIPT, "lr=1e-10")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        publication = await session.wait_for_publication(uri)

        assert publication.version == 1
        [diagnostic] = gs101_diagnostics(publication.diagnostics)
        assert diagnostic.source == "gradsight"
        assert diagnostic.severity == types.DiagnosticSeverity.Warning
        assert diagnostic.code_description.href == rule_doc_path("GS101").as_uri()
        assert diagnostic.code_description.href.startswith("file://")
        assert diagnostic.data == {"rule": "lr-too-small"}
        assert "1e-10" in diagnostic.message
        assert diagnostic.range == types.Range(
            start=types.Position(line=line, character=column),
            end=types.Position(line=line, character=column + len("lr=1e-10")),
        )

    run_scenario(scenario)


def test_did_change_fixing_bug_clears_gs101(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")
    line, _, column = find_position(TINY_LR_SCRIPT, "1e-10")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        opened = await session.wait_for_publication(uri, version=1)
        assert gs101_diagnostics(opened.diagnostics)

        # An incremental edit, as editors send them: replace "1e-10" with "1e-2".
        session.edit_text(uri, 2, (line, column), (line, column + len("1e-10")), "1e-2")
        changed = await session.wait_for_publication(uri, version=2)
        assert gs101_diagnostics(changed.diagnostics) == []

    run_scenario(scenario, FAST_DEBOUNCE)


def test_did_change_debounced_to_one_publication(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")
    debounce_s = 0.2

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        await session.wait_for_publication(uri, version=1)
        first_after_open = len(session.publications)

        # Typing "1e-2" over "1e-10" character by character, the bug coming and going in between.
        texts = [FIXED_SCRIPT, TINY_LR_SCRIPT, FIXED_SCRIPT, TINY_LR_SCRIPT, FIXED_SCRIPT]
        for version, text in enumerate(texts, start=2):
            session.replace_text(uri, version, text)

        final = await session.wait_for_publication(uri, version=6, since=first_after_open)
        assert gs101_diagnostics(final.diagnostics) == []

        # Proving that nothing else arrives takes a wait: twice the debounce delay is plenty.
        await asyncio.sleep(2 * debounce_s)
        versions = [publication.version for publication in session.publications[first_after_open:]]
        assert versions == [6]

    run_scenario(scenario, {"debounceMs": debounce_s * 1000})


@pytest.mark.parametrize(
    ("initialization_options", "expected_delay_s"),
    [(None, 0.3), ({"debounceMs": 800}, 0.8)],
    ids=["default-300ms", "configured-800ms"],
)
def test_did_change_waits_for_debounce_delay(tmp_path: Path, initialization_options, expected_delay_s):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        await session.wait_for_publication(uri, version=1)

        changed_at = time.monotonic()
        session.replace_text(uri, 2, FIXED_SCRIPT)
        publication = await session.wait_for_publication(uri, version=2)

        # Both times come from this process's monotonic clock. The 20 ms of slack cover timer
        # granularity in the server.
        assert publication.received_at - changed_at >= expected_delay_s - 0.02

    run_scenario(scenario, initialization_options)


def test_did_save_publishes_at_once(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        await session.wait_for_publication(uri, version=1)

        # With a one-minute debounce delay only the save can trigger the analysis in time.
        (tmp_path / "train.py").write_text(FIXED_SCRIPT, encoding="utf-8")
        session.replace_text(uri, 2, FIXED_SCRIPT)
        session.save_document(uri)
        saved = await session.wait_for_publication(uri, version=2)
        assert gs101_diagnostics(saved.diagnostics) == []

    run_scenario(scenario, {"debounceMs": 60_000})


def test_syntax_error_then_fix_restores_gs101(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")
    error_line, _, _ = find_position(BROKEN_SCRIPT, "loss = criterion(")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        await session.wait_for_publication(uri, version=1)

        session.replace_text(uri, 2, BROKEN_SCRIPT)
        broken = await session.wait_for_publication(uri, version=2)
        [diagnostic] = broken.diagnostics
        assert diagnostic.severity == types.DiagnosticSeverity.Error
        assert diagnostic.source == "gradsight"
        assert diagnostic.code is None
        assert diagnostic.message.startswith("SyntaxError: ")
        assert diagnostic.message.endswith(SYNTAX_ERROR_SUFFIX)
        # Python reports an unclosed bracket at the bracket itself.
        assert diagnostic.range.start.line == error_line

        session.replace_text(uri, 3, TINY_LR_SCRIPT)
        fixed = await session.wait_for_publication(uri, version=3)
        assert len(gs101_diagnostics(fixed.diagnostics)) == 1

    run_scenario(scenario, FAST_DEBOUNCE)


CASES_DIR = Path(__file__).parent / "cases" / "static"


def test_case_file_gs101_with_related_location():
    path = CASES_DIR / "vgg_cifar10_tiny_lr.py"
    uri = path.as_uri()
    text = path.read_text(encoding="utf-8")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, text, version=1)
        publication = await session.wait_for_publication(uri, version=1)

        [diagnostic] = gs101_diagnostics(publication.diagnostics)
        # The optimizer is built on line 55 with lr=args.lr. The value comes from --lr on line 40.
        assert diagnostic.range.start.line == 54
        assert diagnostic.related_information, "expected the place where the learning rate is set"
        for related in diagnostic.related_information:
            assert related.location.uri == uri
        assert any(related.location.range.start.line == 39 for related in diagnostic.related_information)

    run_scenario(scenario)


def test_too_deeply_nested_file_gets_information(tmp_path: Path):
    uri = document_uri(tmp_path, "generated.py")
    # A generated sum of 1,500 terms parses, but is nested too deeply for the checker to walk.
    source = TINY_LR_SCRIPT + "total = " + " + ".join(["1"] * 1500) + "\n"

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, source, version=1)
        publication = await session.wait_for_publication(uri, version=1)

        [diagnostic] = publication.diagnostics
        assert diagnostic.severity == types.DiagnosticSeverity.Information
        assert diagnostic.message.startswith("gradsight could not analyse this file: ")
        assert diagnostic.code is None
        warning = await session.wait_for_log_message(lambda message: uri in message.message)
        assert warning.type == types.MessageType.Warning

    run_scenario(scenario)


def test_non_ascii_line_gets_utf16_columns(tmp_path: Path):
    uri = document_uri(tmp_path, "train_kopf.py")
    line, text, column = find_position(NON_ASCII_SCRIPT, "lr=1e-10")
    expected_start = utf16_length(text[:column])
    # "🙂" takes two UTF-16 code units, the umlauts one each.
    assert expected_start == column + 1

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, NON_ASCII_SCRIPT, version=1)
        publication = await session.wait_for_publication(uri, version=1)

        [diagnostic] = gs101_diagnostics(publication.diagnostics)
        assert diagnostic.range.start == types.Position(line=line, character=expected_start)
        assert diagnostic.range.end == types.Position(line=line, character=expected_start + len("lr=1e-10"))

    run_scenario(scenario)


def test_position_encoding_utf32_counts_code_points(tmp_path: Path):
    uri = document_uri(tmp_path, "train_kopf.py")
    line, _, column = find_position(NON_ASCII_SCRIPT, "lr=1e-10")
    capabilities = types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf32])
    )

    async def scenario(session: LspSession) -> None:
        assert session.initialize_result.capabilities.position_encoding == types.PositionEncodingKind.Utf32

        session.open_document(uri, NON_ASCII_SCRIPT, version=1)
        publication = await session.wait_for_publication(uri, version=1)
        [diagnostic] = gs101_diagnostics(publication.diagnostics)
        assert diagnostic.range.start == types.Position(line=line, character=column)

    run_scenario(scenario, capabilities=capabilities)


def test_did_close_clears_diagnostics(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        await session.wait_for_publication(uri, version=1)
        after_open = len(session.publications)

        session.close_document(uri)
        cleared = await session.wait_for_publication(uri, since=after_open)
        assert list(cleared.diagnostics) == []

    run_scenario(scenario)


FAULTY_CORE_SERVER = (sys.executable, str(Path(__file__).with_name("lsp_faulty_core.py")))


def test_core_exception_leaves_server_serving(tmp_path: Path):
    failing_uri = document_uri(tmp_path, "failing.py")
    healthy_uri = document_uri(tmp_path, "train.py")
    later_uri = document_uri(tmp_path, "eval.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(failing_uri, FIXED_SCRIPT, version=1)
        opened = await session.wait_for_publication(failing_uri, version=1)
        assert gs101_diagnostics(opened.diagnostics) == []

        session.replace_text(failing_uri, 2, TINY_LR_SCRIPT + RAISE_MARKER + "\n")
        error = await session.wait_for_log_message(lambda message: failing_uri in message.message)
        assert error.type == types.MessageType.Error
        assert "version 2" in error.message
        assert "Traceback" in error.message
        assert "simulated failure of the static checker" in error.message

        # Other documents are still analysed, and the failed one keeps its last diagnostics.
        session.open_document(healthy_uri, TINY_LR_SCRIPT, version=1)
        healthy = await session.wait_for_publication(healthy_uri, version=1)
        assert len(gs101_diagnostics(healthy.diagnostics)) == 1
        assert [p.version for p in session.publications if p.uri == failing_uri] == [1]

        # The failing document recovers once the checker accepts it again.
        session.replace_text(failing_uri, 3, TINY_LR_SCRIPT)
        recovered = await session.wait_for_publication(failing_uri, version=3)
        assert len(gs101_diagnostics(recovered.diagnostics)) == 1

        session.open_document(later_uri, FIXED_SCRIPT, version=1)
        await session.wait_for_publication(later_uri, version=1)
        assert await session.shutdown_and_exit() == 0

    run_scenario(scenario, FAST_DEBOUNCE, command=FAULTY_CORE_SERVER)


def test_stale_slow_analysis_never_published(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, TINY_LR_SCRIPT + SLOW_MARKER + "\n", version=1)
        # Without debouncing the change is analysed while version 1 is still being analysed.
        session.replace_text(uri, 2, FIXED_SCRIPT)

        latest = await session.wait_for_publication(uri, version=2)
        assert gs101_diagnostics(latest.diagnostics) == []
        assert [p.version for p in session.publications if p.uri == uri] == [2]

    run_scenario(scenario, {"debounceMs": 0}, command=FAULTY_CORE_SERVER)


def test_slow_analysis_does_not_delay_other_documents(tmp_path: Path):
    slow_uri = document_uri(tmp_path, "slow.py")
    quick_uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(slow_uri, TINY_LR_SCRIPT + SLOW_MARKER + "\n", version=1)
        session.open_document(quick_uri, TINY_LR_SCRIPT, version=1)

        await session.wait_for_publication(quick_uri, version=1)
        assert [p.uri for p in session.publications] == [quick_uri]

        slow = await session.wait_for_publication(slow_uri, version=1)
        assert len(gs101_diagnostics(slow.diagnostics)) == 1

    run_scenario(scenario, command=FAULTY_CORE_SERVER)


def make_large_script(line_count: int) -> str:
    """Build a training script of exactly `line_count` lines with the GS101 bug near its end."""
    header = TINY_LR_SCRIPT.replace("optimizer = torch.optim.SGD(model.parameters(), lr=1e-10)\n", "")
    footer = "optimizer = torch.optim.SGD(model.parameters(), lr=1e-10)\n"
    lines = header.splitlines(keepends=True)
    block = 0
    while len(lines) + 4 < line_count:
        lines += [
            f"def scaled_relu_{block}(x):\n",
            f"    # Layer {block} of a deep stack of activations.\n",
            f"    return torch.relu(x) * {block + 1}.0\n",
            "\n",
        ]
        block += 1

    lines += ["\n"] * (line_count - len(lines) - 1) + [footer]
    return "".join(lines)


def test_large_document_does_not_block_others(tmp_path: Path):
    large_uri = document_uri(tmp_path, "large_train.py")
    small_uri = document_uri(tmp_path, "train.py")
    large_script = make_large_script(10_000)
    assert large_script.count("\n") == 10_000
    bug_line, _, bug_column = find_position(large_script, "lr=1e-10")

    async def scenario(session: LspSession) -> None:
        session.open_document(large_uri, large_script, version=1)
        session.open_document(small_uri, TINY_LR_SCRIPT, version=1)

        small = await session.wait_for_publication(small_uri, version=1)
        assert len(gs101_diagnostics(small.diagnostics)) == 1

        large = await session.wait_for_publication(large_uri, version=1, timeout=60)
        [diagnostic] = gs101_diagnostics(large.diagnostics)
        assert diagnostic.range.start == types.Position(line=bug_line, character=bug_column)

        # An incremental edit of the last line of the large document fixes the bug.
        session.edit_text(large_uri, 2, (bug_line, bug_column + 3), (bug_line, bug_column + 8), "1e-2")
        fixed = await session.wait_for_publication(large_uri, version=2, timeout=60)
        assert gs101_diagnostics(fixed.diagnostics) == []

    run_scenario(scenario, FAST_DEBOUNCE)


def test_invalid_initialization_option_logged(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        warning = await session.wait_for_log_message(lambda message: "debounceMs='soon'" in message.message)
        assert warning.type == types.MessageType.Warning

        session.open_document(uri, TINY_LR_SCRIPT, version=1)
        publication = await session.wait_for_publication(uri, version=1)
        assert len(gs101_diagnostics(publication.diagnostics)) == 1

    run_scenario(scenario, {"debounceMs": "soon"})


def test_server_ends_when_client_disappears():
    async def main() -> None:
        session = await start_session()
        try:
            session.process.stdin.close()
            assert await asyncio.wait_for(session.process.wait(), 10) == 1
        finally:
            await end_session(session)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("source", "line", "column", "expected"),
    [
        ("x = 1\n", 1, 5, (0, 4)),
        ("a\r\nb = 'ä🙂' + c\n", 2, 12, (1, 12)),
        ("a\rb\rc = 1\n", 3, 5, (2, 4)),
        # A form feed is whitespace to Python, not a line break.
        ("\x0cx = 1\ny = 2\n", 2, 1, (1, 0)),
        # Positions past the end of a line or of the document are clamped.
        ("x = 1\n", 1, 40, (0, 5)),
        ("x = 1", 9, 1, (0, 5)),
    ],
    ids=["ascii", "crlf-and-astral", "cr-only", "form-feed", "past-line-end", "past-document-end"],
)
def test_line_index_utf16_position(source, line, column, expected):
    position = LineIndex(source).position(line, column)
    assert (position.line, position.character) == expected


def test_finding_to_diagnostic_related_and_hint():
    assert RULES["GS201"].information_as_hint
    source = "for p in model.backbone.parameters():\n    p.requires_grad = False\n"
    finding = Finding(
        code="GS201",
        rule="frozen-parameters",
        severity=Severity.INFORMATION,
        message="parameters of model.backbone are frozen",
        span=Span(2, 5, 2, 28),
        related=(RelatedLocation(Span(1, 10, 1, 23), "model.backbone is defined here"),),
    )

    diagnostic = finding_to_diagnostic(finding, "file:///project/train.py", LineIndex(source))

    assert diagnostic.severity == types.DiagnosticSeverity.Hint
    [related] = diagnostic.related_information
    assert related.location.uri == "file:///project/train.py"
    assert related.location.range == types.Range(
        start=types.Position(line=0, character=9), end=types.Position(line=0, character=22)
    )
    assert related.message == "model.backbone is defined here"


def test_source_error_diagnostic_message():
    error = SourceError("'(' was never closed", line=2, column=8)

    diagnostic = source_error_to_diagnostic(error, LineIndex("x = 1\nloss = (\n"))

    assert diagnostic.message == f"SyntaxError: '(' was never closed {SYNTAX_ERROR_SUFFIX}"
    assert diagnostic.range == types.Range(
        start=types.Position(line=1, character=7), end=types.Position(line=1, character=8)
    )
