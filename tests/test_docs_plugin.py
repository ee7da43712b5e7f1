"""Every Python example in docs/plugin.md runs (with STEPS cut to 2, more than one step, and a small generator;
the class folders of example 12 exported from it)."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthaug import create_generator
from synthaug.export import export_image_folder
from synthaug.mix.pool import generate_pool

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("docs")
    torch.manual_seed(0)
    gen = create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3)
    gen.class_names = ["Parasitized", "Uninfected"]  # as a generator trained on malaria records them
    gen.save(work / "runs" / "cvae-malaria" / "checkpoint")
    export_image_folder(gen, work / "synthetic-cells", n=40, progress=False)  # `synthaug export` (example 12)
    gen.save(work / "received" / "other-hospital-cvae")  # example 11: a checkpoint trained on other patients
    generate_pool(gen, np.repeat([0, 1], 64), seed=0).save(work / "pools" / "cvae-malaria")
    return work


def test_the_page_has_the_thirteen_examples():
    assert len(EXAMPLES) == 13


def _cut(index: int) -> str:
    code = re.sub(r"^STEPS = \d+$", "STEPS = 2", EXAMPLES[index], flags=re.M)
    return re.sub(r"^EPOCH_STEPS = \d+$", "EPOCH_STEPS = 1", code, flags=re.M)


# Examples 1 (DataLoader worker processes) and 2 (the Accelerator loop) run as a user would, in a fresh
# Python; the others run in this process, each in a fresh namespace (so its imports must be its own), which
# spares a Python + torch start each. The random states it may seed are put back afterwards.
SUBPROCESS = (0, 1)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index, workdir, data_root, monkeypatch, capsys):
    code = _cut(index)
    if index in SUBPROCESS:
        env = {**os.environ, "SYNTHAUG_DATA": str(data_root)}
        proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip()  # each example prints what it did
        return
    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    monkeypatch.chdir(workdir)
    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate(), torch.get_num_threads()
    try:
        exec(compile(code, f"docs/plugin.md example {index + 1}", "exec", dont_inherit=True), {"__name__": "__main__"})
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        torch.set_num_threads(states[3])
    assert capsys.readouterr().out.strip()  # each example prints what it did
