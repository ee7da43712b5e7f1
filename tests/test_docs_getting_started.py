"""The Python examples of docs/getting-started.md marked as executed run (sources from a folder and a
callable, the torchvision v2 twin), as tests/test_docs_plugin.py runs docs/plugin.md's."""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from synthaug import create_generator
from synthaug.export import export_image_folder

DOC = Path(__file__).resolve().parents[1] / "docs" / "getting-started.md"
MARK = "<!-- executed by tests/test_docs_getting_started.py -->"
EXAMPLES = re.findall(re.escape(MARK) + r"\n```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_marked_examples_are_found():
    assert len(EXAMPLES) == 1 and DOC.read_text().count(MARK) == 1


def test_examples_run(tmp_path, data_root, monkeypatch, capsys):
    torch.manual_seed(0)
    gen = create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3)
    gen.class_names = ["Parasitized", "Uninfected"]
    export_image_folder(gen, tmp_path / "synthetic-cells", n=20, progress=False)  # `synthaug export`
    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    monkeypatch.chdir(tmp_path)
    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        for i, code in enumerate(EXAMPLES):
            exec(compile(code, f"docs/getting-started.md example {i + 1}", "exec", dont_inherit=True),
                 {"__name__": "__main__"})
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
    out = capsys.readouterr().out
    assert "Image" in out and "{'Parasitized': 0, 'Uninfected': 1}" in out
    assert "strong: (8, 3, 32, 32) torch.uint8" in out
