"""`gradsight.runtime.run.run_script` on small training scripts written for each behaviour."""

from __future__ import annotations

import sys
import textwrap

import torch

from gradsight.runtime.run import run_script

TRAIN_LOOP = """
import sys
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for step in range(20):
    x = torch.randn(16, 4)
    loss = model(x).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


def write_script(tmp_path, source, name="train.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def codes(result):
    return {finding["code"] for finding in result.report.findings}


def test_script_gets_argv_and_main_name(tmp_path, capsys):
    script = write_script(tmp_path, """
        import sys
        print("name", __name__, "argv", sys.argv[1:], "first path", sys.path[0])
    """)
    saved_argv = list(sys.argv)
    result = run_script(script, ["--lr", "3"])
    output = capsys.readouterr().out
    assert f"name __main__ argv ['--lr', '3'] first path {tmp_path}" in output
    assert result.outcome.ended_by == "end"
    assert sys.argv == saved_argv
    assert str(tmp_path) not in sys.path


def test_stops_after_steps(tmp_path):
    script = write_script(tmp_path, TRAIN_LOOP + "print('loop ended')\n")
    result = run_script(script, [], steps=3)
    assert result.outcome.ended_by == "steps"
    assert result.report.run["optimizerSteps"] == 3
    assert result.report.models[0].steps == [0, 2]
    assert not result.report.has_problems


def test_hooks_removed_after_run(tmp_path):
    backward, autograd_backward, init = torch.Tensor.backward, torch.autograd.backward, torch.optim.Optimizer.__init__
    run_script(write_script(tmp_path, TRAIN_LOOP), [], steps=2)
    assert torch.Tensor.backward is backward
    assert torch.autograd.backward is autograd_backward
    assert torch.optim.Optimizer.__init__ is init
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
    optimizer_module = sys.modules["torch.optim.optimizer"]
    assert not optimizer_module._global_optimizer_pre_hooks
    assert not optimizer_module._global_optimizer_post_hooks


def test_script_exception_reported(tmp_path, capsys):
    script = write_script(tmp_path, TRAIN_LOOP.replace("optimizer.step()", "optimizer.step()\n    if step == 1:\n        raise ValueError('bad batch')"))
    result = run_script(script, [], steps=10)
    stderr = capsys.readouterr().err
    assert result.outcome.ended_by == "exception"
    assert "ValueError: bad batch" in stderr
    assert "runpy" not in stderr
    assert result.report.models, "the model seen before the exception is still reported"


def test_script_sys_exit_reported(tmp_path):
    script = write_script(tmp_path, TRAIN_LOOP.replace("optimizer.step()", "optimizer.step()\n    sys.exit(3)"))
    result = run_script(script, [], steps=10)
    assert result.outcome.ended_by == "exit"
    assert result.outcome.exit_code == 3
    assert result.report.run["optimizerSteps"] == 1


def test_script_except_exception_does_not_swallow_stop(tmp_path):
    script = write_script(tmp_path, TRAIN_LOOP.replace("    optimizer.step()", "    try:\n        optimizer.step()\n    except Exception:\n        pass"))
    result = run_script(script, [], steps=2)
    assert result.outcome.ended_by == "steps"


def test_leaf_tensor_outside_model_is_gs914(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        scale = torch.ones(1, requires_grad=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(10):
            loss = (model(torch.randn(8, 4)) * scale).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=3)
    finding = next(f for f in result.report.findings if f["code"] == "GS914")
    assert finding["layer"] == "scale"
    assert finding["line"] == 6
    assert finding["severity"] == "error"


def test_input_requiring_grad_is_not_gs914(tmp_path):
    script = write_script(tmp_path, TRAIN_LOOP.replace("x = torch.randn(16, 4)", "x = torch.randn(16, 4, requires_grad=True)"))
    result = run_script(script, [], steps=3)
    assert "GS914" not in codes(result)


def test_model_rebuilt_after_optimizer_is_gs901(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model = nn.Linear(4, 1)
        for step in range(10):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=3)
    assert codes(result) == {"GS901"}
    assert result.report.models[0].report.layers[0]["status"] == "not-in-optimizer"


def test_gan_generator_not_reported_by_discriminator_pass(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        torch.manual_seed(0)
        generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
        discriminator = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        g_optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
        bce = nn.BCEWithLogitsLoss()
        for step in range(20):
            real, noise = torch.randn(32, 8), torch.randn(32, 4)
            fake = generator(noise)
            d_loss = bce(discriminator(real), torch.ones(32, 1)) + bce(discriminator(fake.detach()), torch.zeros(32, 1))
            d_optimizer.zero_grad()
            d_loss.backward()
            d_optimizer.step()
            g_loss = bce(discriminator(fake), torch.ones(32, 1))
            g_optimizer.zero_grad()
            g_loss.backward()
            g_optimizer.step()
    """)
    result = run_script(script, [], steps=4)
    assert not result.report.has_problems, result.report.findings
    assert [model.names for model in result.report.models] == [["generator"], ["discriminator"]]


def test_no_optimizer_stops_after_backward_passes(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Linear(4, 1)
        for step in range(10):
            model.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
    """)
    result = run_script(script, [], steps=2)
    assert result.outcome.ended_by == "backward"
    assert result.report.run["backwardPasses"] == 2
    assert any("No optimizer step ran" in note for note in result.report.all_notes())


def test_autograd_backward_counted_once(tmp_path):
    script = write_script(tmp_path, TRAIN_LOOP.replace("loss.backward()", "torch.autograd.backward([loss])"))
    result = run_script(script, [], steps=3)
    assert result.report.run["backwardPasses"] == 3


def test_report_text_lists_layers(tmp_path):
    result = run_script(write_script(tmp_path, TRAIN_LOOP), [], steps=2)
    text = str(result.report)
    assert "Model `model` (Sequential" in text
    assert text.splitlines()[-1] == "No problems found."
