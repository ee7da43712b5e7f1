"""The pilot's choices and the confirmatory draw count of the powered malaria answer, by its plan's rules.

Reads a pilot run folder (configs/bench/malaria-powered-pilot.yaml; validation AUROC only) and writes what the
plan (docs/results/malaria-powered/PLAN.md, "Pilot" and "Number of draws") fixes from it:

    python benchmarks/pilot.py runs/malaria-powered-pilot --out docs/results/malaria-powered/pilot \
        --write-config configs/bench/malaria-powered.yaml

``--write-config`` writes the confirmatory config: the pilot config with the choices applied and draws 0..N-1
(``synthaug.bench.powered_answer.confirmatory_config``); commit it, and N in PLAN.md, before draw 0 runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthaug.bench.paths import read_results  # noqa: E402
from synthaug.bench.powered import pilot_choices  # noqa: E402
from synthaug.bench.powered_answer import confirmatory_config  # noqa: E402

PILOT_CONFIG = ROOT / "configs" / "bench" / "malaria-powered-pilot.yaml"


def markdown(run: str, c: dict) -> str:
    def scores(d: dict) -> str:
        return ", ".join(f"{k:g}: {v:+.4f}" for k, v in d.items())

    return "\n".join([
        f"# Pilot choices ({run}; {c['metric']}, mean paired difference against each arm's control)", "",
        f"- per_real (the plan's ratio r) = **{c['per_real']:g}** ({scores(c['per_real_scores'])})",
        f"- fine-tune steps F = **{c['finetune_steps']}** ({scores(c['finetune_scores'])})",
        f"- edit strength s = **{c['edit_strength']:g}** ({scores(c['edit_scores'])})" if c["edit_strength"] is not None
        else "- edit strength: no edits arm in the pilot",
        f"- teacher labels: **{'yes' if c['teacher'] else 'no'}** (teacher minus hard labels: "
        f"{scores(c['teacher_margins'])}; teacher only if it wins at every site size)",
        f"- SD of the primary rows' paired differences: {', '.join(f'{k} {v:.4f}' for k, v in c['primary_sds'].items())}; "
        f"SD_max = {c['sd_max']:.4f}",
        f"- draws per site size: N = min({c['rules']['cap']}, max({c['rules']['minimum']}, {c['draws_wanted']})) = "
        f"**{c['draws']}**; minimum detectable effect at N: {c['mde_at_draws']:.4f} (80 % power, Holm family "
        f"{c['rules']['family']})" + (" (the cap binds)" if c["cap_binds"] else ""), ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="the pilot's run folder (or its run record)")
    p.add_argument("--out", type=Path, help="write <out>.json and <out>.md")
    p.add_argument("--pilot-config", type=Path, default=PILOT_CONFIG, help="the pilot's config (default: %(default)s)")
    p.add_argument("--write-config", type=Path, help="write the confirmatory config (YAML) here")
    args = p.parse_args(argv)
    rows = read_results(args.run)
    if not rows:
        raise SystemExit(f"{args.run}: no results rows; run the pilot first (configs/bench/malaria-powered-pilot.yaml)")
    choices = pilot_choices(rows)
    text = markdown(args.run.name, choices)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(choices, indent=1, default=str) + "\n")
        args.out.with_suffix(".md").write_text(text)
    if args.write_config:
        write_config(args.pilot_config, choices, args.write_config, run=args.run.name)
    return 0


def write_config(pilot_path: Path, choices: dict, out: Path, *, run: str) -> None:
    import yaml

    if out.exists():
        raise SystemExit(f"{out} exists: the confirmatory config is written once; move it away to write it again")
    if not pilot_path.is_file():
        raise SystemExit(f"--pilot-config {pilot_path}: no such file")
    cfg = confirmatory_config(yaml.safe_load(pilot_path.read_text()), choices)
    header = (f"# The CONFIRMATORY run of the powered malaria answer (docs/results/malaria-powered/PLAN.md), written by\n"
              f"#     python benchmarks/pilot.py {run} --write-config {out}\n"
              f"# from {pilot_path.name} and the pilot's choices: per_real {choices['per_real']:g}, fine-tune steps "
              f"{choices['finetune_steps']}, edit strength {choices['edit_strength']}, teacher labels "
              f"{'yes' if choices['teacher'] else 'no'}, N = {choices['draws']} draws per site size.\n"
              "# Run in shards (--shard i/S), then: python benchmarks/powered_answer.py runs/malaria-powered\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(cfg, sort_keys=False, width=110))
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
