"""Every Python example in docs/plugin.md runs (with STEPS cut to a few and a small generator)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synthaug import create_generator
from synthaug.pool import generate_pool

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("docs")
    torch.manual_seed(0)
    gen = create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3)
    gen.save(work / "runs" / "cvae-malaria" / "checkpoint")
    import numpy as np

    generate_pool(gen, np.repeat([0, 1], 64), seed=0).save(work / "pools" / "cvae-malaria")
    return work


def test_the_page_has_the_ten_examples():
    assert len(EXAMPLES) == 10


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index, workdir, data_root):
    code = re.sub(r"^STEPS = \d+$", "STEPS = 3", EXAMPLES[index], flags=re.M)
    code = re.sub(r"^EPOCH_STEPS = \d+$", "EPOCH_STEPS = 1", code, flags=re.M)
    env = {**os.environ, "SYNTHAUG_DATA": str(data_root)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()  # each example prints what it did
