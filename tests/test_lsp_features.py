"""Language server features beyond diagnostics: code actions and configuration, over real stdio."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from lsp_session import LspSession, document_uri, run_scenario

SCRIPT = """\
import torch
import torch.nn as nn

model = nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-10)
model.requires_grad = False
"""
FAST = {"debounceMs": 50}


def _codes(publication) -> list[str]:
    return sorted(str(d.code) for d in publication.diagnostics)


async def _actions(session: LspSession, uri: str, line: int, diagnostics) -> list[types.CodeAction]:
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line, character=0)),
        context=types.CodeActionContext(diagnostics=list(diagnostics)),
    )
    return await session.client.text_document_code_action_async(params)


def test_noqa_code_action_inserts_comment(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, SCRIPT)
        publication = await session.wait_for_publication(uri)
        gs101 = [d for d in publication.diagnostics if d.code == "GS101"]
        actions = await _actions(session, uri, 4, gs101)
        noqa = next(action for action in actions if action.title == "Disable GS101 for this line")
        (edit,) = noqa.edit.changes[uri]
        assert edit.new_text == "  # noqa: GS101"
        assert edit.range.start == types.Position(line=4, character=len(SCRIPT.splitlines()[4]))
        assert list(noqa.diagnostics) == gs101

    run_scenario(scenario, FAST)


def test_noqa_code_action_extends_existing_comment(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")
    text = SCRIPT.replace("lr=1e-10)", "lr=1e-10)  # noqa: E501")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, text)
        publication = await session.wait_for_publication(uri)
        actions = await _actions(session, uri, 4, publication.diagnostics)
        noqa = next(action for action in actions if action.title == "Disable GS101 for this line")
        (edit,) = noqa.edit.changes[uri]
        assert edit.new_text == ", GS101"
        assert edit.range.start.character == len(text.splitlines()[4])

    run_scenario(scenario, FAST)


def test_code_actions_only_for_requested_range(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, SCRIPT)
        await session.wait_for_publication(uri)
        actions = await _actions(session, uri, 0, [])
        assert not actions

    run_scenario(scenario, FAST)


def test_pyproject_settings_apply_to_documents(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.gradsight]\nignore = ["GS206"]\n[tool.gradsight.severity]\nGS101 = "error"\n')
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, SCRIPT)
        publication = await session.wait_for_publication(uri)
        assert _codes(publication) == ["GS101"]
        assert publication.diagnostics[0].severity == types.DiagnosticSeverity.Error

    run_scenario(scenario, FAST)


def test_editor_settings_override_pyproject(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.gradsight]\nignore = ["GS206"]\n')
    uri = document_uri(tmp_path, "train.py")
    options = {**FAST, "ignore": ["GS101"], "thresholds": {"lr-min": 1e-12}}

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, SCRIPT)
        publication = await session.wait_for_publication(uri)
        assert _codes(publication) == ["GS206"]

    run_scenario(scenario, options)


def test_configuration_change_rechecks_open_documents(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, SCRIPT)
        first = await session.wait_for_publication(uri)
        assert _codes(first) == ["GS101", "GS206"]
        settings = {"gradsight": {"select": [], "ignore": ["GS2"], "severity": {}, "thresholds": {}, "interpreter": []}}
        since = len(session.publications)
        session.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))
        second = await session.wait_for_publication(uri, since=since)
        assert _codes(second) == ["GS101"]

    run_scenario(scenario, FAST)


def test_invalid_editor_settings_are_logged_and_skipped(tmp_path: Path):
    uri = document_uri(tmp_path, "train.py")

    async def scenario(session: LspSession) -> None:
        session.open_document(uri, SCRIPT)
        publication = await session.wait_for_publication(uri)
        assert _codes(publication) == ["GS101", "GS206"]
        await session.wait_for_log_message(lambda message: "ignoring invalid editor settings" in message.message)

    run_scenario(scenario, {**FAST, "severity": {"GS101": "loud"}})
