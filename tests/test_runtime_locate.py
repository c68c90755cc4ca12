"""Mapping layer names of a live model to the source that builds them."""

from __future__ import annotations

import textwrap

from gradsight.runtime.locate import LayerLocator, locator_for, split_layer_name


def locate(source: str, model_type: str, layers: list[str], names=("model",)):
    text = textwrap.dedent(source)
    spans = LayerLocator({"train.py": text}).locate(model_type, names, layers)
    lines = text.splitlines()
    result = {}
    for name, span in spans.items():
        if span is None:
            result[name] = None
            continue
        line = lines[span.line - 1]
        result[name] = (span.line, line[span.column - 1 :].split(",")[0].split(" for ")[0])
    return result


def test_split_layer_name():
    assert split_layer_name("features.0.conv") == ["features", "0", "conv"]
    assert split_layer_name("blocks[0].weight") == ["blocks", "0", "weight"]
    assert split_layer_name("heads['cls']") == ["heads", "cls"]


def test_attribute_in_class():
    source = """
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.Linear(4, 8)
                self.head = nn.Linear(8, 2)
    """
    assert locate(source, "Net", ["encoder", "head"]) == {
        "encoder": (6, "nn.Linear(4"),
        "head": (7, "nn.Linear(8"),
    }


def test_sequential_attribute_elements():
    source = """
        import torch.nn as nn
        class VGG(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(
                    nn.Conv2d(3, 64, 3),
                    nn.ReLU(),
                    nn.Conv2d(64, 64, 3),
                )
                self.classifier = nn.Linear(64, 10)
    """
    assert locate(source, "VGG", ["features.0", "features.2", "classifier"]) == {
        "features.0": (7, "nn.Conv2d(3"),
        "features.2": (9, "nn.Conv2d(64"),
        "classifier": (11, "nn.Linear(64"),
    }


def test_module_level_sequential_with_starred_loop():
    source = """
        import torch.nn as nn
        layers = []
        for _ in range(3):
            layers += [nn.Linear(32, 32), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(32, 1))
    """
    result = locate(source, "Sequential", ["0", "4", "6"])
    assert result["0"] == (5, "nn.Linear(32")
    assert result["4"] == (5, "nn.Linear(32")
    assert result["6"] == (6, "nn.Linear(32")


def test_append_loop_in_function():
    source = """
        import torch.nn as nn
        def make_layers(config):
            layers = [nn.Flatten()]
            for _ in range(2):
                layers.append(nn.Linear(8, 8))
            layers.extend([nn.Dropout(), nn.Linear(8, 1)])
            return nn.Sequential(*layers)
        model = make_layers(None)
    """
    result = locate(source, "Sequential", ["1", "2", "4"])
    assert result == {"1": (6, "nn.Linear(8"), "2": (6, "nn.Linear(8"), "4": (7, "nn.Linear(8")}


def test_unknown_loop_count_falls_back_to_sequential():
    source = """
        import torch.nn as nn
        def build(depth):
            layers = []
            for _ in range(depth):
                layers.append(nn.Linear(8, 8))
            return nn.Sequential(*layers)
        model = build(4)
    """
    assert locate(source, "Sequential", ["2"]) == {"2": (7, "nn.Sequential(*layers)")}


def test_factory_blocks():
    source = """
        import torch.nn as nn
        def vgg_block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU())
        model = nn.Sequential(vgg_block(3, 16), vgg_block(16, 32), nn.Linear(32, 10))
    """
    result = locate(source, "Sequential", ["0.0", "2"])
    assert result == {"0.0": (4, "nn.Conv2d(cin"), "2": (5, "nn.Linear(32")}


def test_module_list_comprehension_and_plain_list():
    source = """
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
                self.extra = [nn.Linear(4, 2) for _ in range(2)]
    """
    result = locate(source, "Net", ["blocks.1", "extra[0]"])
    assert result == {"blocks.1": (6, "nn.ModuleList([nn.Linear(4"), "extra[0]": (7, "nn.Linear(4")}


def test_nested_user_class():
    source = """
        import torch.nn as nn
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(8, 8, 3)
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.block = Block()
    """
    assert locate(source, "Net", ["block.conv"]) == {"block.conv": (6, "nn.Conv2d(8")}


def test_unknown_model_has_no_location():
    source = """
        import torch.nn as nn
        x = 1
    """
    assert locate(source, "ResNet", ["layer1.0.conv1"], names=("net",)) == {"layer1.0.conv1": None}


def test_columns_count_code_points():
    source = 'import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        self.é = 1; self.head = nn.Linear(1, 1)\n'
    span = LayerLocator({"a.py": source}).locate("Net", [], ["head"])["head"]
    assert span.line == 4
    assert source.splitlines()[3][span.column - 1 :].startswith("nn.Linear")


def test_syntax_error_source_ignored():
    spans = LayerLocator({"bad.py": "def (:\n"}).locate("Net", ["model"], ["head"])
    assert spans == {"head": None}


def test_locator_for_reuse_until_change():
    # gradsight.watch checks the same files every few steps: they are parsed once while unchanged.
    first_text = "import torch.nn as nn\nmodel = nn.Sequential(nn.Linear(2, 2))\n"
    first = locator_for({"/tmp/train.py": first_text})
    assert locator_for({"/tmp/train.py": first_text}) is first
    changed = locator_for({"/tmp/train.py": "import torch.nn as nn\n\nmodel = nn.Sequential(nn.Linear(2, 2))\n"})
    assert changed is not first
    assert changed.locate("Sequential", ["model"], ["0"])["0"].line == 3
