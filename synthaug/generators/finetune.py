"""Fine-tuning: a generator's training started from another checkpoint's weights (``init_from``), refused when the
checkpoint is another generator, does not fit, or was trained on a validation or test patient of the split."""
from __future__ import annotations

import warnings
from pathlib import Path

from ..config import ConfigError
from ..data.splits import checkpoint_patients, refuse_evaluation_patients


def init_weights(gen, checkpoint: str | Path, splits) -> None:
    """Load ``checkpoint``'s weights (and, for models with one, its EMA copy and count) into ``gen``: a fine-tune's
    start. Training options (``ema_decay``, loss weighting...) may differ from the checkpoint's; refused: another
    generator, weights that do not fit (the differing options named), or a checkpoint trained on a validation or
    test patient of ``splits`` (``LeakageError``). One whose patients are unrecorded loads with a warning."""
    from .base import load_generator

    checkpoint = Path(checkpoint)
    start = load_generator(checkpoint)
    if start.generator_name != gen.generator_name:
        raise ConfigError(f"generator.init_from={checkpoint}: it holds a {start.generator_name!r}, this config trains "
                          f"{gen.generator_name!r}; give a checkpoint of the same generator")
    patients = checkpoint_patients(checkpoint)
    if patients is None:
        warnings.warn(f"generator.init_from={checkpoint}: no training_options.json beside it names its training "
                      "patients, so nobody can check that it never saw a validation or test patient", stacklevel=2)
    else:
        refuse_evaluation_patients(patients, splits, f"generator.init_from={checkpoint}")
    try:
        gen.load_state_dict(start.state_dict())
    except RuntimeError:
        mine, theirs = dict(gen.generator_options), dict(start.generator_options)
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ConfigError(f"generator.init_from={checkpoint}: its weights do not fit this config's model; the options "
                          f"differ in {differ} (checkpoint {[theirs.get(k) for k in differ]}, config "
                          f"{[mine.get(k) for k in differ]}): use the checkpoint's architecture options") from None
