"""Checkpoints as the Hugging Face Hub expects them: the folder ``PyTorchModelHubMixin`` writes and reads.

``gen.save_pretrained(folder)`` writes ``config.json`` (what rebuilds the model), ``model.safetensors`` (the
weights) and ``README.md``, a model card whose front matter the Hub reads (``library_name: synthaug``, tags)
and whose text carries the classes, the training record and the quality gate's result when it is known (the
checks of ``synthaug train --gate-every``, or a ``quality.json`` of ``synthaug evaluate --gate`` given as
``quality=``). ``Generator.from_pretrained`` takes a local folder or a Hub model id (``"org/name"``); without
a network a Hub id is refused in one line (``HF_HUB_OFFLINE=1`` reads a copy already in the Hub cache).
Upload a folder with ``huggingface_hub.upload_folder(repo_id=..., folder_path=folder)``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
FILES = ["config.json", "model.safetensors", CARD_FILE]
#: ``org/name``: what a Hub model id looks like (a local path that does not exist may look the same)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _rows(record: dict[str, Any]) -> list[str]:
    skip = {"gate_checks"}
    return [f"| {key} | {json.dumps(value) if isinstance(value, (dict, list)) else value} |"
            for key, value in record.items() if key not in skip]


def _gate_lines(gen: Any, quality: dict[str, Any] | None) -> list[str]:
    """The quality gate's verdict: from ``quality`` (quality.json), else the training's own checks, else unknown."""
    gate = (quality or {}).get("gate")
    if gate:
        cas = quality.get("cas") or {}
        verdict = "passed" if gate.get("passed") else "rejected"
        return [f"**{verdict}** (`synthaug evaluate --gate`): {gate.get('reason', '')}",
                f"CAS ratio {gate.get('ratio')}, CAS {cas.get('cas')} vs real-trained {cas.get('real_score')} on "
                f"{cas.get('val_items')} real validation images ({len(cas.get('seeds') or [])} seed(s))."]
    checks = (gen.training_record or {}).get("gate_checks") or []
    if checks:
        last = checks[-1]
        verdict = "passed" if last.get("passed") else "not passed"
        return [f"**{verdict}** at step {last.get('step')} of training (`synthaug train --gate-every`): "
                f"{last.get('reason', '')}", f"{len(checks)} check(s); the last CAS ratio {last.get('ratio')}."]
    return ["Not measured. Run `synthaug evaluate --checkpoint FOLDER --data DATA --gate --out quality/` and "
            "`gen.save_pretrained(FOLDER, quality=\"quality/quality.json\")` to record it here."]


def model_card(gen: Any, *, quality: dict[str, Any] | None = None) -> str:
    """The README.md of a saved generator: Hub front matter, what it makes, its training record, its gate."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(library_name="synthaug", tags=["synthaug", "image-generation", "class-conditional",
                                                        "medical-imaging", gen.generator_name])
    classes = ", ".join(f"{i}: {name}" for i, name in enumerate(gen.class_names)) if gen.class_names else "unnamed"
    record = gen.training_record
    lines = [f"---\n{data.to_yaml()}\n---", "", f"# synthaug `{gen.generator_name}` generator", "",
             f"A class-conditional generator of {gen.channels} x {gen.image_size} x {gen.image_size} images, "
             f"{gen.num_classes} classes ({classes}), saved by synthaug (config.json + model.safetensors).", "",
             "```python", "from synthaug import Generator", "",
             'gen = Generator.from_pretrained("FOLDER or org/name")',
             "images = gen.sample(16)  # uint8 (16, C, H, W), balanced classes; labels=... to choose", "```", "",
             "## Training record", ""]
    lines += ["| key | value |", "| --- | --- |", *_rows(record)] if record else ["Not recorded."]
    lines += ["", "## Quality gate", "", *_gate_lines(gen, quality), ""]
    return "\n".join(lines)


def read_quality(quality: str | os.PathLike | dict[str, Any] | None) -> dict[str, Any] | None:
    """``quality=`` of ``save_pretrained``: a quality.json path (or its dict), checked to hold a result."""
    if quality is None or isinstance(quality, dict):
        return quality
    path = Path(quality)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"quality={str(path)!r}: not a readable quality.json ({err}); give the file "
                         "`synthaug evaluate --out DIR` wrote (DIR/quality.json)") from None
    if not isinstance(data, dict) or "cas" not in data:
        raise ValueError(f"quality={str(path)!r} is not a quality.json of synthaug evaluate (no 'cas' entry)")
    return data


def resolve_pretrained(name_or_path: str | os.PathLike) -> Path:
    """A local folder as it is; a Hub model id (``org/name``) that is no local folder: downloaded (or read from
    the Hub cache) with ``huggingface_hub``. Without a network the id is refused in one line."""
    path = Path(name_or_path)
    if path.exists() or not _HUB_ID.match(str(name_or_path)):
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=FILES, library_name="synthaug"))
    except Exception as err:  # noqa: BLE001 - no network, offline mode, no such repository: one answer
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise OSError(f"{name_or_path!r} is no local folder and could not be fetched from the Hugging Face Hub "
                      f"({type(err).__name__}: {reason}); without a network give a local checkpoint folder, or set "
                      "HF_HUB_OFFLINE=1 to read a copy already in the Hub cache") from None
