"""GS502 normalize-stats."""

import pytest

from conftest import findings_of

PRELUDE = "import torchvision.transforms as T\nfrom torchvision.transforms import v2\nimport torchvision.transforms.functional as TF\n"


def _findings(body):
    return [(f.code, f.severity.label) for f in findings_of(PRELUDE + body)]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("t = T.Normalize((0.5,), (0.1,))", [("GS502", "warning")]),
        ("t = T.Normalize(mean=[0.5] * 3, std=[0.05] * 3)", [("GS502", "warning")]),
        ("t = T.Normalize(mean=(0.5, 0.5, 0.5), std=(0.05, 0.2, 0.2))", [("GS502", "warning")]),
        ("t = v2.Normalize(mean=[0.0], std=[0.0])", [("GS502", "error")]),
        ("t = T.Normalize([0.5, 0.5, 0.5], [0.2, 0.2])", [("GS502", "error")]),
        ("t = T.Normalize([0.5], [0.2, 0.2, 0.2])", []),
        ("t = T.Compose([T.ToTensor(), T.Normalize([125.3, 123.0, 113.9], [63.0, 62.1, 66.7])])", [("GS502", "warning")]),
        ("import torch\nt = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([125.3], [63.0])])", [("GS502", "warning")]),
        # 0-255 statistics are right when nothing scaled the images first.
        ("t = T.Normalize([125.3, 123.0, 113.9], [63.0, 62.1, 66.7])", []),
        ("import torch\nt = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32), v2.Normalize([125.3], [63.0])])", []),
        # Dataset statistics.
        ("t = T.Compose([T.ToTensor(), T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])", []),
        ("t = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])", []),
        ("t = T.Normalize((0.1307,), (0.3081,))", []),
        # Constants and the functional form.
        ("MEAN, STD = (0.5, 0.5, 0.5), (0.01, 0.01, 0.01)\nt = T.Normalize(MEAN, STD)", [("GS502", "warning")]),
        ("y = TF.normalize(x, [0.5], [0.0])", [("GS502", "error")]),
        # torch.nn.functional.normalize is an L2 normalisation, not this transform.
        ("import torch.nn.functional as F\ny = F.normalize(x, 2.0, 0)", []),
        # Hounsfield units of CT scans are not pixels, even after ToTensor().
        ("t = T.Compose([T.ToTensor(), T.Normalize(mean=[-600.0], std=[400.0])])", []),
        # A Normalize kept in a variable, then placed after ToTensor().
        ("norm = T.Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])\nf = T.Compose([T.ToTensor(), norm])", [("GS502", "warning")]),
        # Unknown values.
        ("t = T.Normalize(stats['mean'], stats['std'])", []),
    ],
)
def test_normalize(body, expected):
    assert _findings(body) == expected


def test_normalize_constant_defined_elsewhere_is_related():
    (finding,) = findings_of(PRELUDE + "STD = (0.05, 0.05, 0.05)\n\nt = T.Normalize((0.5, 0.5, 0.5), STD)\n")
    assert finding.span.line == 6
    assert [item.span.line for item in finding.related] == [4]
    assert "multiplies the inputs by 20" in finding.message


def test_pixel_scale_message_gives_scaled_stats():
    body = "t = T.Compose([T.ToTensor(), T.Normalize([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])])\n"
    (finding,) = findings_of(PRELUDE + body)
    assert "mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)" in finding.message
    assert "near -2.1" in finding.message
