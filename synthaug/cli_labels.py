"""``--labels`` of ``synthaug sample`` and ``export``: class names or ids, one for all samples or one each."""
from __future__ import annotations

from .config import ConfigError

LABELS_HELP = ("class for all samples, or one per sample, by name or id: Parasitized, or Parasitized,Uninfected,0 "
               "(names: those the checkpoint records)")


def label_tokens(text: str, names: list[str]) -> list[str]:
    """``--labels`` split at commas, keeping a class name that holds commas ("normal, benign") whole."""
    with_commas = {name.strip().casefold() for name in names if "," in name}
    pieces, tokens, i = text.split(","), [], 0
    while i < len(pieces):
        # the longest run of pieces that spells such a name, else one piece
        j = next((j for j in range(len(pieces), i + 1, -1)
                  if ",".join(pieces[i:j]).strip().casefold() in with_commas), i + 1)
        tokens.append(",".join(pieces[i:j]).strip())
        i = j
    return [t for t in tokens if t]


def parse_labels(text: str | None, n: int, gen):
    """The labels of ``--labels`` (class names or ids, one for all ``n`` samples or one each) for ``gen``."""
    import torch

    if text is None:
        return None
    tokens = label_tokens(text, gen.class_names or [])
    if not tokens:
        raise ConfigError(f"--labels {text!r}: give class names or ids separated by commas, e.g. "
                          f"{','.join(gen.class_names or ['0', '1'])}")
    from .generators.base import check_sample_labels

    try:
        values = gen.class_ids(tokens, what="--labels")
        check_sample_labels(len(values), torch.tensor(values), gen.num_classes, owner=f"--labels {text}")
    except ValueError as err:  # a wrong --labels is a usage error
        raise ConfigError(str(err)) from None
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ConfigError(f"--labels: {len(values)} labels for --n {n}; give one label or exactly n")
    return torch.tensor(values, dtype=torch.long)


def class_text(gen, c: int) -> str:
    return repr(gen.class_names[c]) if gen.class_names else f"class {c}"
