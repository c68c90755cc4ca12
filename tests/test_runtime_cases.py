"""End-to-end checks of "Check Gradients while debugging" on the runtime cases.

Each case script runs under a real debugpy and pauses on the line after `backward()` on two
iterations. The probe runs with exactly the expressions that a real `gradsight lsp` server
returns for `gradsight/probe`, and the snapshots go through `gradsight/analyzeSnapshot` of the
same server. The expectations come from tests/cases/runtime/expected.json.
"""

from __future__ import annotations

import json

import pytest
from runtime_helpers import RUNTIME_CASES, LspError, LspStdioClient, pause_and_snapshot

EXPECTED = json.loads((RUNTIME_CASES / "expected.json").read_text())["cases"]


@pytest.fixture(scope="module")
def lsp():
    client = LspStdioClient()
    yield client
    client.close()


@pytest.fixture(scope="module")
def expressions(lsp):
    return lsp.request("gradsight/probe", None)


@pytest.fixture(scope="module")
def reports(lsp, expressions):
    """Run every case once and keep both checks' probe results and analysis reports."""
    results = {}
    for case in EXPECTED:
        script = RUNTIME_CASES / case
        checks = pause_and_snapshot(script, expressions, checks=2, fingerprint=case == "healthy_vgg.py")
        session_id = f"session-{case}"
        analyses = [
            lsp.request(
                "gradsight/analyzeSnapshot",
                {"sessionId": session_id, "snapshot": check.snapshot, "sourceUris": [script.resolve().as_uri()]},
            )
            for check in checks
        ]
        lsp.request("gradsight/endSession", {"sessionId": session_id})
        results[case] = (checks, analyses)
    return results


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_probe_request_returns_expressions(expressions):
    assert set(expressions) == {"version", "install", "findCandidates", "snapshot", "readChunk"}
    assert "{model}" in expressions["snapshot"]
    assert "{optimizer}" in expressions["snapshot"]
    assert "{token}" in expressions["readChunk"]
    assert "{index}" in expressions["readChunk"]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case_install_and_candidates(reports, expressions, case):
    checks, _ = reports[case]
    assert checks[0].install["probe"]["version"] == expressions["version"]
    assert checks[0].install["probe"]["torch"].startswith("2.")
    assert checks[0].candidates["models"][0]["expression"] == "model"
    assert [optimizer["expression"] for optimizer in checks[0].candidates["optimizers"]] == ["optimizer"]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case_expected_findings(reports, case):
    _, analyses = reports[case]
    findings = [finding for analysis in analyses for finding in analysis["findings"]]
    layers = [layer for analysis in analyses for layer in analysis["layers"]]
    for expected in EXPECTED[case]:
        codes = _as_list(expected["code"])
        statuses = _as_list(expected["status"])
        matching = [f for f in findings if f["code"] in codes and expected["layer"] in f["layer"]]
        assert matching, f"{case}: no finding with code {codes} on layer {expected['layer']!r}: {findings}"
        if "severity" in expected:
            assert {f["severity"] for f in matching} == {expected["severity"]}
        layer_statuses = {layer["status"] for layer in layers if expected["layer"] in layer["name"]}
        assert layer_statuses & set(statuses), f"{case}: statuses {layer_statuses}, expected one of {statuses}"


def test_healthy_case_has_no_warning(reports):
    _, analyses = reports["healthy_vgg.py"]
    for analysis in analyses:
        assert [f for f in analysis["findings"] if f["severity"] in ("warning", "error")] == []
        assert {layer["status"] for layer in analysis["layers"]} == {"ok"}


def test_healthy_case_probe_changes_nothing(reports):
    checks, _ = reports["healthy_vgg.py"]
    for check in checks:
        before, after = check.fingerprints
        assert before == after
        assert check.frame_names[0] == check.frame_names[1]
        assert "_gradsight_probe" not in check.frame_names[1]


def test_cleared_before_step_unchanged_on_second_check(reports):
    _, (first, second) = reports["cleared_before_step.py"]
    assert {layer["status"] for layer in first["layers"]} == {"ok"}
    assert {layer["status"] for layer in second["layers"]} == {"unchanged"}
    assert second["model"]["check"] == 2


def test_layers_have_source_locations(reports):
    _, analyses = reports["frozen_layer.py"]
    layers = {layer["name"]: layer for layer in analyses[0]["layers"]}
    location = layers["layer_4"]["location"]
    assert location["uri"] == (RUNTIME_CASES / "frozen_layer.py").resolve().as_uri()
    # self.layer_4 = nn.Linear(64, 5) is line 14 of the script; LSP lines are 0-based.
    assert location["range"]["start"] == {"line": 13, "character": 23}
    finding = next(f for f in analyses[0]["findings"] if f["code"] == "GS920")
    assert finding["location"] == location


def test_unregistered_blocks_located_in_list(reports):
    _, analyses = reports["unregistered_blocks.py"]
    layers = {layer["name"]: layer for layer in analyses[0]["layers"]}
    assert layers["blocks[0]"]["location"]["range"]["start"]["line"] == 10
    assert layers["blocks[0]"]["status"] == "not-in-optimizer"


def test_analyze_rejects_missing_snapshot(lsp):
    with pytest.raises(LspError) as raised:
        lsp.request("gradsight/analyzeSnapshot", {"sessionId": "bad"})
    assert raised.value.error["code"] == -32602


def test_end_session_forgets_previous_snapshot(lsp, reports):
    checks, _ = reports["cleared_before_step.py"]
    first, second = (check.snapshot for check in checks)
    params = {"sessionId": "forget", "snapshot": first, "sourceUris": []}
    lsp.request("gradsight/analyzeSnapshot", params)
    assert lsp.request("gradsight/endSession", {"sessionId": "forget"}) is None
    report = lsp.request("gradsight/analyzeSnapshot", dict(params, snapshot=second))
    assert report["model"]["check"] == 1
    assert {layer["status"] for layer in report["layers"]} == {"ok"}
