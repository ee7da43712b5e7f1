"""Fine-tuning from a checkpoint (generator.init_from): the weights it starts from, and what it refuses."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from synthaug.config import ConfigError
from synthaug.data import LeakageError
from synthaug.generators import create_generator
from synthaug.data.splits import checkpoint_patients
from synthaug.generators.finetune import init_weights

TINY = {"base_width": 8, "channel_mults": (1, 2), "sample_steps": 3}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ddpm(seed: int, **options):
    torch.manual_seed(seed)
    return create_generator("ddpm", num_classes=2, image_size=16, channels=3, **{**TINY, **options})


def splits(val=("V1",), test=("T1",)):
    return SimpleNamespace(info={"val_groups": list(val), "test_groups": list(test)})


@pytest.fixture
def checkpoint(tmp_path):
    """A donor checkpoint in a run folder whose training_options.json names its patients D1, D2."""
    gen = ddpm(1)
    gen.ema_updates += 7
    gen.save_pretrained(tmp_path / "donor" / "checkpoint")
    (tmp_path / "donor" / "training_options.json").write_text(json.dumps({"splits": {"train_groups": ["D1", "D2"]}}))
    return tmp_path / "donor" / "checkpoint", gen


def test_the_fine_tune_starts_from_the_checkpoints_weights_and_ema(checkpoint):
    path, donor = checkpoint
    gen = ddpm(2, ema_decay=0.99)  # a training option may differ
    assert not torch.equal(next(iter(gen.parameters())), next(iter(donor.parameters())))
    init_weights(gen, path, splits())
    for (name, mine), theirs in zip(gen.state_dict().items(), donor.state_dict().values()):
        assert torch.equal(mine, theirs), name
    assert int(gen.ema_updates) == 7
    assert checkpoint_patients(path) == ["D1", "D2"]


def test_a_checkpoint_that_saw_a_validation_or_test_patient_is_refused(checkpoint):
    path, _ = checkpoint
    with pytest.raises(LeakageError, match="D2"):
        init_weights(ddpm(2), path, splits(val=("V1", "D2")))
    with pytest.raises(LeakageError, match="D1"):
        init_weights(ddpm(2), path, splits(test=("D1",)))


def test_other_architectures_and_generators_are_refused_by_name(checkpoint):
    path, _ = checkpoint
    with pytest.raises(ConfigError, match="base_width"):
        init_weights(ddpm(2, base_width=16), path, splits())
    torch.manual_seed(0)
    other = create_generator("cvae", num_classes=2, image_size=16, channels=3)
    with pytest.raises(ConfigError, match="'cvae'"):
        init_weights(other, path, splits())


def test_unrecorded_patients_load_with_a_warning(checkpoint):
    path, _ = checkpoint
    (path.parent / "training_options.json").unlink()
    assert checkpoint_patients(path) is None
    with pytest.warns(UserWarning, match="nobody can check"):
        init_weights(ddpm(2), path, splits())


def test_a_checkpoint_source_is_checked_against_the_split_like_init_from(checkpoint, tmp_path):
    """The shared generator of the data-sharing answer enters a benchmark as a source ({checkpoint: PATH}): with
    its patients recorded it is refused when it saw a validation or test patient, and passes silently otherwise;
    a checkpoint without a record, or another kind of source, keeps the warning that nobody can check."""
    import warnings

    from synthaug.bench.cell import check_source_patients, checkpoint_of_source

    path, _ = checkpoint
    for spec in ({"checkpoint": str(path)}, f"checkpoint:{path}", str(path)):
        assert checkpoint_of_source(spec) == path
        with pytest.raises(LeakageError, match="D1"):
            check_source_patients(spec, splits(test=("D1",)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_source_patients({"checkpoint": str(path)}, splits())  # D1, D2 are neither validation nor test
    (path.parent / "training_options.json").unlink()
    with pytest.warns(UserWarning, match="cannot tell which patients"):
        check_source_patients({"checkpoint": str(path)}, splits(val=("unrecorded",)))
