"""GS401-GS407: the order and presence of training events in each iteration of a training loop."""

import ast
import textwrap

import pytest

from conftest import findings_of
from gradsight.findings import Fix, Severity
from gradsight.fixes import apply_fixes


def apply_edits(source, edits):
    """Apply one fix's edits with the function that `gradsight check --fix` uses."""
    text, applied = apply_fixes(source, [Fix("test", tuple(edits))])
    assert applied == 1
    return text


def of_code(source, code):
    return [finding for finding in findings_of(source) if finding.code == code]


# GS401 grads-never-cleared


def test_never_cleared_in_plain_loop():
    source = """
        import torch
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in range(10):
            loss = model(torch.randn(2, 4)).sum()
            loss.backward()
            optimizer.step()
    """
    (finding,) = of_code(source, "GS401")
    assert finding.span.line == 8
    assert finding.severity == Severity.WARNING
    assert "optimizer.zero_grad()" in finding.message


def test_never_cleared_with_zero_grad_only_before_loop():
    source = """
        import torch
        def train(model, loader, optimizer):
            optimizer.zero_grad()
            for x, y in loader:
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
    """
    assert len(of_code(source, "GS401")) == 1


def test_never_cleared_for_one_of_two_optimizers():
    source = """
        import torch
        g = torch.nn.Linear(4, 4)
        d = torch.nn.Linear(4, 1)
        opt_g = torch.optim.Adam(g.parameters(), lr=2e-4)
        opt_d = torch.optim.Adam(d.parameters(), lr=2e-4)
        for step in range(100):
            opt_d.zero_grad()
            d(g(torch.randn(2, 4)).detach()).mean().backward()
            opt_d.step()
            (-d(g(torch.randn(2, 4)))).mean().backward()
            opt_g.step()
    """
    (finding,) = of_code(source, "GS401")
    assert "`opt_g`" in finding.message
    assert finding.span.line == 12


def test_cleared_in_outer_loop_is_accumulation():
    source = """
        import torch
        def train(model, loader, optimizer):
            for epoch in range(10):
                optimizer.zero_grad()
                for x, y in loader:
                    torch.nn.functional.mse_loss(model(x), y).backward()
                    optimizer.step()
    """
    assert of_code(source, "GS401") == []


def test_cleared_by_helper_function():
    source = """
        import torch
        def reset(opt):
            opt.zero_grad(set_to_none=True)
        def train(model, loader, optimizer):
            for x, y in loader:
                reset(optimizer)
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
    """
    assert of_code(source, "GS401") == []


def test_cleared_with_grad_none_loop():
    source = """
        import torch
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in range(10):
            for p in model.parameters():
                p.grad = None
            model(torch.randn(2, 4)).sum().backward()
            optimizer.step()
    """
    assert of_code(source, "GS401") == []


def test_cleared_by_unresolved_helper_is_quiet():
    source = """
        import torch
        from utils import zero_grad_all
        def train(model, loader, optimizer):
            for x, y in loader:
                zero_grad_all(optimizer)
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
    """
    assert of_code(source, "GS401") == []


# GS402 missing-backward


def test_missing_backward():
    source = """
        import torch
        def train(model, loader, optimizer, criterion):
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                optimizer.step()
    """
    (finding,) = of_code(source, "GS402")
    assert finding.severity == Severity.ERROR
    assert finding.span.line == 7


def test_backward_in_helper_is_found():
    source = """
        import torch
        def compute(model, x, y):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss
        def train(model, loader, optimizer):
            for x, y in loader:
                optimizer.zero_grad()
                compute(model, x, y)
                optimizer.step()
    """
    assert of_code(source, "GS402") == []


def test_backward_before_loop_over_optimizers_is_quiet():
    source = """
        import torch
        def step_all(loss, optimizers):
            loss.backward()
            for opt in optimizers:
                opt.step()
                opt.zero_grad()
    """
    assert of_code(source, "GS402") == []


def test_autograd_grad_counts_as_backward():
    source = """
        import torch
        def train(model, loader, optimizer):
            for x, y in loader:
                loss = model(x).sum()
                grads = torch.autograd.grad(loss, list(model.parameters()))
                for p, g in zip(model.parameters(), grads):
                    p.grad = g
                optimizer.step()
    """
    assert of_code(source, "GS402") == []


# GS403 missing-step


def test_missing_step():
    source = """
        import torch
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(3):
            for x in range(10):
                optimizer.zero_grad()
                loss = model(torch.randn(2, 4)).sum()
                loss.backward()
    """
    (finding,) = of_code(source, "GS403")
    assert finding.severity == Severity.ERROR
    assert finding.span.line == 9


def test_step_in_caller_is_found():
    source = """
        import torch
        def accumulate(model, chunks):
            for x in chunks:
                model(x).sum().backward()
        def train(model, batches, optimizer):
            for chunks in batches:
                optimizer.zero_grad()
                accumulate(model, chunks)
                optimizer.step()
    """
    assert of_code(source, "GS403") == []


def test_scaler_step_counts_as_step():
    source = """
        import torch
        def train(model, loader, optimizer, scaler):
            for x in loader:
                optimizer.zero_grad()
                scaler.scale(model(x).sum()).backward()
                scaler.step(optimizer)
                scaler.update()
    """
    assert of_code(source, "GS403") == []


def test_without_optimizer_is_quiet():
    source = """
        import torch
        def saliency(model, images):
            for image in images:
                model(image).max().backward()
    """
    assert of_code(source, "GS403") == []


# GS404 grads-cleared-before-step


LOOP_ORDER = """
import torch
from torch import nn, optim


def train(model, loader, epochs=5, lr=0.01):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        for inputs, labels in loader:
            outputs = model(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.zero_grad()
            optimizer.step()
"""


def test_cleared_before_step():
    (finding,) = of_code(LOOP_ORDER, "GS404")
    assert finding.span.line == 14
    assert finding.severity == Severity.ERROR
    assert [item.span.line for item in finding.related] == [13, 15]


def test_cleared_before_step_fix_moves_clearing_after_step():
    (finding,) = of_code(LOOP_ORDER, "GS404")
    assert finding.fix is not None and finding.fix.safe
    fixed = apply_edits(LOOP_ORDER, finding.fix.edits)
    ast.parse(fixed)
    assert "loss.backward()\n            optimizer.step()\n            optimizer.zero_grad()\n" in fixed
    assert of_code(fixed, "GS404") == []
    assert of_code(fixed, "GS401") == []


def test_cleared_before_step_fix_at_end_of_file_without_newline():
    source = LOOP_ORDER.rstrip("\n")
    (finding,) = of_code(source, "GS404")
    fixed = apply_edits(source, finding.fix.edits)
    ast.parse(fixed)
    assert fixed.endswith("optimizer.step()\n            optimizer.zero_grad()")


def test_cleared_before_step_fix_into_accumulation_branch():
    source = textwrap.dedent(
        """
        import torch
        def train(model, loader, optimizer):
            for i, (x, y) in enumerate(loader):
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.zero_grad()
                if (i + 1) % 4 == 0:
                    optimizer.step()
        """
    )
    (finding,) = of_code(source, "GS404")
    fixed = apply_edits(source, finding.fix.edits)
    ast.parse(fixed)
    assert "optimizer.step()\n            optimizer.zero_grad()\n" in fixed
    assert of_code(fixed, "GS404") == []


def test_model_zero_grad_between_backward_and_step():
    source = """
        import torch
        def train(model, loader, optimizer):
            for x, y in loader:
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                model.zero_grad()
                optimizer.step()
    """
    assert len(of_code(source, "GS404")) == 1


def test_cleared_before_step_in_helper_reported_once():
    source = """
        import torch
        def train_step(model, batch, opt):
            loss = model(batch).sum()
            loss.backward()
            opt.zero_grad()
            opt.step()
        def fit(model, loader, optimizer):
            for batch in loader:
                train_step(model, batch, optimizer)
    """
    findings = of_code(source, "GS404")
    assert [finding.span.line for finding in findings] == [6]


def test_other_model_cleared_is_quiet():
    source = """
        import torch
        netG = torch.nn.Linear(4, 4)
        netD = torch.nn.Linear(4, 1)
        optD = torch.optim.Adam(netD.parameters(), lr=2e-4)
        optG = torch.optim.Adam(netG.parameters(), lr=2e-4)
        for step in range(10):
            netD.zero_grad()
            errD = netD(torch.randn(2, 4)).mean()
            errD.backward()
            netG.zero_grad()
            optD.step()
            errG = -netD(netG(torch.randn(2, 4))).mean()
            errG.backward()
            optG.step()
    """
    assert of_code(source, "GS404") == []


def test_cleared_in_other_branch_is_quiet():
    source = """
        import torch
        def train(model, loader, optimizer, accumulate):
            for i, x in enumerate(loader):
                model(x).sum().backward()
                if accumulate:
                    optimizer.step()
                else:
                    optimizer.zero_grad()
    """
    assert of_code(source, "GS404") == []


@pytest.mark.parametrize(
    "alias",
    [
        "clear = optimizer.zero_grad",
        "clear = model.zero_grad",
        "clear = functools.partial(optimizer.zero_grad, set_to_none=True)",
        "clear = partial(optimizer.zero_grad, set_to_none=True)",
    ],
)
def test_cleared_before_step_through_method_alias(alias):
    source = f"""
import functools
from functools import partial
import torch
def train(model, loader, optimizer):
    {alias}
    for x, y in loader:
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        clear()
        optimizer.step()
"""
    (finding,) = of_code(source, "GS404")
    assert finding.span.line == 10
    assert "`clear()` clears the gradients" in finding.message
    assert of_code(source, "GS401") == []


def test_step_alias_after_clearing():
    source = """
        import torch
        def train(model, loader, optimizer):
            clear, update = optimizer.zero_grad, optimizer.step
            step = optimizer.step
            for x, y in loader:
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                optimizer.zero_grad()
                step()
    """
    (finding,) = of_code(source, "GS404")
    assert finding.related[1].span.line == 10


@pytest.mark.parametrize(
    "setup, loop_body",
    [
        # The alias clears before backward() or after the step.
        ("clear = optimizer.zero_grad", "clear()\n        model(x).sum().backward()\n        optimizer.step()"),
        ("clear = optimizer.zero_grad", "model(x).sum().backward()\n        optimizer.step()\n        clear()"),
        ("step = optimizer.step", "optimizer.zero_grad()\n        model(x).sum().backward()\n        step()"),
        # Another object's method.
        ("clear = cache.clear", "optimizer.zero_grad()\n        model(x).sum().backward()\n        clear()\n        optimizer.step()"),
    ],
)
def test_method_alias_in_order_is_quiet(setup, loop_body):
    source = f"""
import torch
def train(model, loader, optimizer, cache):
    {setup}
    for x in loader:
        {loop_body}
"""
    assert of_code(source, "GS404") == []
    assert of_code(source, "GS401") == []


def test_rebound_method_alias_is_not_followed():
    source = """
        import torch
        def train(model, loader, optimizer, verbose):
            clear = optimizer.zero_grad
            if verbose:
                clear = print
            for x in loader:
                model(x).sum().backward()
                clear()
                optimizer.step()
    """
    assert of_code(source, "GS404") == []


# GS405 step-before-backward


def test_step_before_backward():
    source = """
        import torch
        def finetune(model, loader, optimizer, criterion):
            for inputs, labels in loader:
                optimizer.zero_grad()
                optimizer.step()
                loss = criterion(model(inputs), labels)
                loss.backward()
    """
    (finding,) = of_code(source, "GS405")
    assert finding.span.line == 6
    assert finding.related[0].span.line == 8


def test_step_after_backward_is_quiet():
    source = """
        import torch
        def finetune(model, loader, optimizer, criterion):
            for inputs, labels in loader:
                loss = criterion(model(inputs), labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    """
    assert of_code(source, "GS405") == []


# GS406 scheduler-before-optimizer


def test_scheduler_before_optimizer_in_batch_loop():
    source = """
        import torch
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
        for x in range(100):
            optimizer.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            scheduler.step()
            optimizer.step()
    """
    (finding,) = of_code(source, "GS406")
    assert finding.span.line == 9


def test_scheduler_at_top_of_epoch():
    source = """
        import torch
        def fit(model, loader, optimizer, scheduler, epochs):
            for epoch in range(epochs):
                scheduler.step()
                for x in loader:
                    optimizer.zero_grad()
                    model(x).sum().backward()
                    optimizer.step()
    """
    assert len(of_code(source, "GS406")) == 1


def test_scheduler_after_batch_loop_is_quiet():
    source = """
        import torch
        def fit(model, loader, optimizer, scheduler, epochs):
            for epoch in range(epochs):
                for x in loader:
                    optimizer.zero_grad()
                    model(x).sum().backward()
                    optimizer.step()
                scheduler.step()
    """
    assert of_code(source, "GS406") == []


# GS407 eval-mode-never-undone


def test_eval_in_helper_never_undone():
    source = """
        import torch
        def evaluate(net, loader):
            net.eval()
            with torch.no_grad():
                return sum(net(x).sum().item() for x in loader)
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model.train()
        for epoch in range(10):
            for x in range(10):
                optimizer.zero_grad()
                model(torch.randn(2, 4)).sum().backward()
                optimizer.step()
            evaluate(model, [])
    """
    (finding,) = of_code(source, "GS407")
    assert finding.severity == Severity.INFORMATION
    assert finding.span.line == 15
    assert finding.related[0].span.line == 4
    assert "model.train()" in finding.message


def test_train_at_top_of_epoch_is_quiet():
    source = """
        import torch
        def fit(model, loader, optimizer, epochs):
            for epoch in range(epochs):
                model.train()
                for x in loader:
                    optimizer.zero_grad()
                    model(x).sum().backward()
                    optimizer.step()
                model.eval()
    """
    assert of_code(source, "GS407") == []


def test_train_false_counts_as_eval():
    source = """
        import torch
        def fit(model, loader, optimizer, epochs):
            for epoch in range(epochs):
                for x in loader:
                    optimizer.zero_grad()
                    model(x).sum().backward()
                    optimizer.step()
                model.train(False)
    """
    assert len(of_code(source, "GS407")) == 1


# The loop model across helpers, loop forms and blocks


def test_helpers_followed_two_levels():
    source = """
        import torch
        def clear(opt):
            opt.zero_grad()
        def update(loss, opt):
            loss.backward()
            clear(opt)
            opt.step()
        def fit(model, loader, optimizer):
            for x in loader:
                update(model(x).sum(), optimizer)
    """
    findings = of_code(source, "GS404")
    assert [finding.span.line for finding in findings] == [7]
    assert findings[0].fix is None


def test_while_true_loop_with_break():
    source = """
        import torch
        def fit(model, batches, optimizer, max_steps):
            step = 0
            while True:
                x = next(batches)
                model(x).sum().backward()
                optimizer.step()
                step += 1
                if step >= max_steps:
                    break
    """
    assert [finding.span.line for finding in of_code(source, "GS401")] == [8]


def test_events_inside_try_and_with_blocks():
    source = """
        import torch
        def fit(model, loader, optimizer):
            for x in loader:
                try:
                    with torch.autocast("cpu"):
                        loss = model(x).sum()
                    loss.backward()
                    optimizer.zero_grad()
                finally:
                    optimizer.step()
    """
    assert [finding.span.line for finding in of_code(source, "GS404")] == [9]


def test_clearing_skipped_by_early_continue_is_not_every_step():
    source = """
        import torch
        def fit(model, loader, optimizer):
            for i, x in enumerate(loader):
                model(x).sum().backward()
                if i % 4:
                    continue
                optimizer.step()
                optimizer.zero_grad()
    """
    assert of_code(source, "GS404") == []
    assert of_code(source, "GS401") == []


def test_deepspeed_engine_step_is_quiet():
    source = """
        import deepspeed
        def fit(args, model, loader):
            model_engine, optimizer, _, _ = deepspeed.initialize(args=args, model=model)
            for batch in loader:
                loss = model_engine(batch)
                model_engine.backward(loss)
                model_engine.step()
    """
    assert [f.code for f in findings_of(source) if f.code.startswith("GS4")] == []


def test_other_loops_do_not_supply_missing_events():
    source = """
        import torch
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in range(10):
            optimizer.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            optimizer.step()
        for x in range(10):
            optimizer.zero_grad()
            loss = model(torch.randn(2, 4)).sum()
            optimizer.step()
        for x in range(10):
            optimizer.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
    """
    codes = [(f.code, f.span.line) for f in findings_of(source) if f.code.startswith("GS4")]
    assert codes == [("GS402", 12), ("GS403", 15)]
