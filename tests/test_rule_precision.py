"""GS601 scaler-misuse and GS602 clip-before-unscale on GradScaler training loops."""

import ast
from pathlib import Path

from conftest import findings_of
from gradsight.findings import Severity
from test_rule_loop import apply_edits

AMP_SCALER = (Path(__file__).parent / "cases" / "static" / "amp_scaler.py").read_text()


def of_code(source, code):
    return [finding for finding in findings_of(source) if finding.code == code]


def test_optimizer_step_on_scaled_gradients():
    (finding,) = of_code(AMP_SCALER, "GS601")
    assert finding.span.line == 17
    assert finding.severity == Severity.ERROR
    assert "scaler.step(optimizer)" in finding.message


def test_scaler_step_fix_replaces_call():
    (finding,) = of_code(AMP_SCALER, "GS601")
    fixed = apply_edits(AMP_SCALER, finding.fix.edits)
    ast.parse(fixed)
    assert "    scaler.step(optimizer)\n    scaler.update()\n" in fixed
    assert fixed.count("scaler.update()") == 1
    assert of_code(fixed, "GS601") == []


def test_scaler_step_fix_adds_missing_update():
    source = """
        import torch
        def train(model, loader, optimizer):
            scaler = torch.amp.GradScaler()
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                optimizer.step()
    """
    (finding,) = of_code(source, "GS601")
    assert "update" in finding.fix.title
    import textwrap

    dedented = textwrap.dedent(source)
    fixed = apply_edits(dedented, finding.fix.edits)
    ast.parse(fixed)
    assert "scaler.step(optimizer)\n        scaler.update()" in fixed
    assert of_code(fixed, "GS601") == []


def test_update_never_called():
    source = """
        import torch
        def train(model, loader, optimizer):
            scaler = torch.amp.GradScaler()
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                scaler.step(optimizer)
    """
    (finding,) = of_code(source, "GS601")
    assert finding.span.line == 8
    assert "update()" in finding.message


def test_update_in_helper_is_found():
    source = """
        import torch
        def finish(scaler, optimizer):
            scaler.step(optimizer)
            scaler.update()
        def train(model, loader, optimizer, scaler):
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                finish(scaler, optimizer)
    """
    assert of_code(source, "GS601") == []


def test_disabled_scaler_is_quiet():
    source = """
        import torch
        def train(model, loader, optimizer):
            scaler = torch.amp.GradScaler(enabled=False)
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
    """
    assert [f.code for f in findings_of(source) if f.code.startswith("GS6")] == []


def test_plain_branch_beside_scaled_branch_is_quiet():
    source = """
        import torch
        def train(model, loader, optimizer, scaler, amp):
            for x in loader:
                optimizer.zero_grad()
                loss = model(x).sum()
                if amp:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
    """
    assert of_code(source, "GS601") == []


def test_clip_before_unscale():
    (finding,) = of_code(AMP_SCALER, "GS602")
    assert finding.span.line == 16
    assert finding.severity == Severity.WARNING
    assert "scaler.unscale_(optimizer)" in finding.message


def test_clip_fix_inserts_unscale():
    source = """
        import torch
        def train(model, loader, optimizer, scaler):
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
    """
    import textwrap

    dedented = textwrap.dedent(source)
    (finding,) = of_code(dedented, "GS602")
    fixed = apply_edits(dedented, finding.fix.edits)
    ast.parse(fixed)
    assert "        scaler.unscale_(optimizer)\n        torch.nn.utils.clip_grad_norm_" in fixed
    assert of_code(fixed, "GS602") == []


def test_clip_after_unscale_is_quiet():
    source = """
        import torch
        def train(model, loader, optimizer, scaler):
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
    """
    assert of_code(source, "GS602") == []


def test_accelerate_clipping_is_quiet():
    source = """
        import torch
        def train(model, loader, optimizer, scaler, accelerator):
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
    """
    assert of_code(source, "GS602") == []
