"""The LSP adapter of the runtime requests, apart from the debugger."""

from __future__ import annotations

import time
from collections import namedtuple

import pytest
import torch
import torch.nn as nn
from runtime_helpers import LspError, LspStdioClient

from gradsight.lsp.runtime_requests import RuntimeSessions, plain_json
from gradsight.runtime import probe


def test_plain_json_converts_namedtuples():
    Inner = namedtuple("Inner", ["name", "shape"])
    Outer = namedtuple("Outer", ["sessionId", "snapshot"])
    params = Outer("s", {"parameters": [Inner("weight", [2, 3])]})
    assert plain_json(params) == {"sessionId": "s", "snapshot": {"parameters": [{"name": "weight", "shape": [2, 3]}]}}


def test_sessions_keep_previous_snapshot():
    sessions = RuntimeSessions()
    assert sessions.swap("a", {"n": 1}) == (None, 1)
    assert sessions.swap("a", {"n": 2}) == ({"n": 1}, 2)
    assert sessions.swap("b", {"n": 3}) == (None, 1)
    sessions.end("a")
    assert sessions.swap("a", {"n": 4}) == (None, 1)
    assert len(sessions) == 2


@pytest.fixture(scope="module")
def lsp():
    client = LspStdioClient()
    yield client
    client.close()


def test_analyze_large_snapshot_through_server(lsp):
    model = nn.ModuleList([nn.Linear(2, 2) for _ in range(2_000)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(layer(torch.ones(1, 2)).sum() for layer in model).backward()
    snapshot = probe.snapshot(model, optimizer, {})

    started = time.perf_counter()
    report = lsp.request("gradsight/analyzeSnapshot", {"sessionId": "large", "snapshot": snapshot, "sourceUris": []})
    elapsed = time.perf_counter() - started
    assert len(report["layers"]) == 2_000
    assert {layer["status"] for layer in report["layers"]} == {"ok"}
    # About 0.7 s on the 2-core development machine; the bound leaves room for a slower CI run.
    assert elapsed < 10, elapsed


@pytest.mark.parametrize(
    "params",
    [
        {"sessionId": "x"},
        {"sessionId": 1, "snapshot": {"parameters": []}},
        {"sessionId": "x", "snapshot": {"error": {"code": "no-model", "message": "no model"}}},
        {"sessionId": "x", "snapshot": {"chunked": {"token": "t", "count": 2}}},
    ],
)
def test_analyze_rejects_invalid_params(lsp, params):
    with pytest.raises(LspError) as raised:
        lsp.request("gradsight/analyzeSnapshot", params)
    assert raised.value.error["code"] == -32602


def test_end_session_unknown_is_null(lsp):
    assert lsp.request("gradsight/endSession", {"sessionId": "never-started"}) is None
