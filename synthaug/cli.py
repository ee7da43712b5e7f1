"""``synthaug ...`` sub-commands: parse, build the config, call the library."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, load_config, to_dict
from .cli_evaluate import add_evaluate_command, cas_options, cas_setting
from .cli_labels import LABELS_HELP, class_text, parse_labels
from .failures import EXIT_INTERRUPTED, REPORTED, CommandStopped, exit_code, interrupted
from .train import REQUIRED_KEYS, TrainConfig, check_train_config


def _data_overrides(args: argparse.Namespace) -> list[str]:
    """``--group-pattern`` / ``--channels`` as config overrides (JSON-quoted: a regex is no YAML)."""
    out = []
    if args.group_pattern is not None:
        out.append(f"data.group_pattern={json.dumps(args.group_pattern)}")
    if args.channels is not None:
        out.append(f"data.channels={args.channels}")
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from .data import dataset_short_name

    from .presets import config_file

    path = config_file(config=args.config, preset=args.preset, kind="generators")
    gate = [] if args.gate_every is None else [f"generator.train.gate_every={args.gate_every}"]
    gate += [] if args.log_with is None else [f"log_with={args.log_with}"]
    cfg = load_config(TrainConfig, path, [*args.set, *_data_overrides(args), *gate], required=REQUIRED_KEYS)
    check_train_config(cfg)
    out_dir = Path(args.out or cfg.out_dir.format(generator=cfg.generator.name, data=dataset_short_name(cfg.data.name),
                                                  seed=cfg.seed))
    if args.dry_run:
        print(json.dumps({**to_dict(cfg), "out_dir": str(out_dir), "config_file": str(path)}, indent=2))
        return 0
    from accelerate import Accelerator

    from .tracking import accelerator_kwargs
    from .train import train_reporting_stops

    accelerator = Accelerator(**accelerator_kwargs(cfg.log_with, cfg.project_dir, default_dir=out_dir))
    train_reporting_stops(cfg, out_dir, resume=args.resume, accelerator=accelerator,
                          command=(getattr(args, "prog", "synthaug"), getattr(args, "argv", [])))
    if accelerator.is_main_process:
        print(f"checkpoint: {out_dir / 'checkpoint'}\nsamples:    {out_dir / 'samples.png'}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .generators import load_generator
    from .viz import save_grid

    gen = load_generator(args.checkpoint)
    labels = parse_labels(args.labels, args.n, gen)
    if args.pool:
        from .mix.pool import generate_pool

        pool_labels = gen.check_labels(args.n, labels).numpy()
        pool = generate_pool(gen, pool_labels, seed=args.seed)
        pool.meta["checkpoint"] = str(Path(args.checkpoint).resolve())
        pool.save(args.pool)
        counts = ", ".join(f"{class_text(gen, c)}: {int((pool.labels == c).sum())}" for c in range(gen.num_classes))
        print(f"wrote pool {args.pool} ({args.n} images, {counts}); use it as SyntheticDataset({args.pool!r}, ...) or "
              f"SyntheticMix({args.pool!r})")
        images = torch.from_numpy(pool.images[: min(args.n, 64)])
        grid_labels = torch.as_tensor(np.asarray(pool.labels[: min(args.n, 64)]))
    else:
        grid_labels = gen.check_labels(args.n, labels)  # what sample() draws: one row (or more) per class
        images = gen.sample(args.n, grid_labels, generator=torch.Generator().manual_seed(args.seed))
    if args.grid:
        save_grid(images, args.grid, nrow=args.nrow, labels=grid_labels, class_names=gen.class_names)
        print(f"wrote {args.grid} ({args.n} samples of {gen.generator_name})")
    if args.output:
        np.save(args.output, images.numpy())
        print(f"wrote {args.output} (uint8 {tuple(images.shape)})")
    if not args.grid and not args.output and not args.pool:
        print(f"sampled {tuple(images.shape)}; pass --grid out.png or --output out.npy to keep them")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .checks import check_int
    from .export import export_image_folder
    from .generators import load_generator

    try:
        check_int(args.n, "--n", "export", hint="the number of images to write, e.g. 1000")
        check_int(args.batch_size, "--batch-size", "export", hint="images sampled at once, e.g. 256")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    gen = load_generator(args.checkpoint)
    labels = parse_labels(args.labels, args.n, gen)
    manifest = export_image_folder(gen, args.out, n=args.n, labels=labels, seed=args.seed, batch_size=args.batch_size,
                                   overwrite=args.overwrite, source=str(Path(args.checkpoint).resolve()))
    counts = ", ".join(f"{folder}/: {k}" for folder, k in manifest["counts"].items())
    print(f"wrote {args.n} PNG files into {args.out} ({counts}); read them with "
          f"torchvision.datasets.ImageFolder({str(args.out)!r})")
    folders = list(manifest["counts"])
    if folders != sorted(folders) or len(folders) < gen.num_classes:
        # ImageFolder numbers the folders it finds alphabetically, which are not always the label ids
        print(f"note: ImageFolder numbers these folders alphabetically ({', '.join(sorted(folders))}), so its "
              f"class ids differ from the generator's; {Path(args.out) / 'export.json'} lists the generator's order")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.data_cmd == "download":
        from .data import download_malaria

        if args.name != "malaria":
            raise ConfigError(f"download {args.name!r}: only 'malaria' is downloaded by synthaug; MedMNIST files come "
                              "with the medmnist package (load_dataset('medmnist:<flag>', download=True))")
        folder = download_malaria(args.root, manifest=args.manifest)
        print(f"downloaded and verified {folder}")
        return 0
    from .data import load_dataset

    splits = load_dataset(args.name, root=args.root, image_size=args.image_size, seed=args.seed,
                          train_fraction=args.train_fraction, group_fn=args.group_pattern,
                          **({} if args.channels is None else {"channels": args.channels}))
    by = ("patient" if splits.grouped else "the official split (no patient groups)" if splits.info["split"] == "official"
          else "image (no patient groups)")
    print(f"{splits.name}: classes {splits.classes}, {splits.channels} x {splits.image_size} x {splits.image_size}, "
          f"split by {by}, seed {args.seed}")
    print(splits.summary())
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .generators import describe_generator, list_generators

    for name in list_generators(args.pattern):
        print(f"{name:16s} {describe_generator(name)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .generators import load_generator
    from .quality import check_training_options, evaluate_generator, format_report
    from .mix.pool import load_pool

    gate = _evaluate_gate(args)  # its thresholds are checked before anything is loaded
    if args.source:  # a folder of class folders, module:function or diffusers:PATH (synthaug.sources)
        from .sources import open_source_spec

        source = open_source_spec(args.source, image_size=args.image_size)
    else:
        source = load_pool(args.pool) if args.pool else load_generator(args.checkpoint)
    # a pool (or an export) records the checkpoint it came from
    trained_from = args.checkpoint or (getattr(source, "meta", None) or {}).get("checkpoint") or getattr(
        source, "exported_from", None)
    asked = {"data": args.data, "seed": args.seed, "train_fraction": args.train_fraction, "image_size": args.image_size}
    options = trained_from and check_training_options(trained_from, **asked)  # fails before the data are loaded
    splits = load_dataset(args.data, root=args.root, image_size=args.image_size, seed=args.seed,
                          train_fraction=args.train_fraction, group_fn=args.group_pattern,
                          channels=source.channels)  # the data as the generator saw them
    if args.source:  # re-ordered to the data's classes when it can be, else refused naming both lists
        from .sources import match_classes

        source = match_classes(source, splits.classes, where=f"--data {args.data}")
    _check_same_classes(source, splits.classes, f"--data {args.data}")
    if options:
        check_training_options(trained_from, **asked, splits=splits)  # and the training patients it recorded
    else:
        print(f"warning: no training_options.json next to {trained_from or args.pool}: cannot check that the generator "
              "was trained on this split's training patients only", file=sys.stderr)
    from .progress import stage_lines

    cas = cas_options(args)
    if not args.no_cas:
        print(cas_setting(**cas, train_images=len(splits.train), steps=args.classifier_steps), flush=True)
    stages = 5 + (0 if args.no_cas else 1 + 2 * cas["cas_seeds"])  # extractor, 4 measures, CAS and its classifiers
    with stage_lines("evaluate", total=stages):
        result = evaluate_generator(source, splits, n=args.n, seed=args.seed, cas=not args.no_cas, out_dir=args.out,
                                    cache_dir=args.cache, dataset_key=args.data, gate=gate, **cas,
                                    recipe={k: v for k, v in (("model", args.classifier),
                                                              ("steps", args.classifier_steps)) if v is not None})
    print(format_report(result))  # with the gate's verdict; rejected or not, the command succeeds
    print(f"\nwrote {Path(args.out) / 'quality.json'}, memorization_pairs.png and nearest_train.csv")
    return 0


def _evaluate_gate(args: argparse.Namespace):
    """``--gate`` (a threshold implies it) as a ``GateConfig``, or None."""
    from .quality.gate import DEFAULT_MIN_CLASS_RATIO, DEFAULT_MIN_RATIO, GateConfig, check_gate_options

    if not (args.gate or args.min_ratio is not None or args.min_class_ratio is not None):
        return None
    if args.no_cas:
        raise ConfigError("--gate judges CAS: drop --no-cas")
    min_ratio = DEFAULT_MIN_RATIO if args.min_ratio is None else args.min_ratio
    min_class_ratio = DEFAULT_MIN_CLASS_RATIO if args.min_class_ratio is None else args.min_class_ratio
    try:
        check_gate_options(min_ratio, min_class_ratio, owner="evaluate --gate")
    except ValueError as err:  # a usage error
        raise ConfigError(str(err)) from None
    return GateConfig(min_ratio=min_ratio, min_class_ratio=min_class_ratio)


def _cmd_report(args: argparse.Namespace) -> int:
    from .bench.report import build_report
    from .bench.strategy_report import build_strategies_report, is_strategies_run

    builder = build_strategies_report if is_strategies_run(args.run_dir) else build_report  # its own report
    md, page = builder(args.run_dir, args.out)
    print(f"wrote {md} and {page} (pictures in {md.parent / 'report_files'})")
    return 0


def _check_same_classes(gen, data_classes: list[str], what: str) -> list[str]:
    """Refuse data whose class names are not the checkpoint's (label 0 would mean another class)."""
    names = getattr(gen, "class_names", None)
    if names and list(data_classes) != list(names):
        raise ValueError(f"{what} has the classes {list(data_classes)}, but the checkpoint was trained on {names}; "
                         "give the data set the generator was trained on")
    return list(data_classes)


def _cmd_explore(args: argparse.Namespace) -> int:
    from .explore import Explorer, make_server
    from .generators import load_generator

    if args.images < 2:
        raise ConfigError(f"--images {args.images}: the directions need at least 2 training images (e.g. 512)")
    gen = load_generator(args.checkpoint)
    images = labels = classes = None
    if args.data:
        import numpy as np
        import torch

        from .data import load_dataset

        # training patients only (the split of --seed): --images cells drawn at random from them
        splits = load_dataset(args.data, root=args.root, image_size=gen.image_size, seed=args.seed,
                              group_fn=args.group_pattern, channels=gen.channels)
        if splits.num_classes != gen.num_classes or splits.channels != gen.channels:
            raise ValueError(f"--data {args.data}: {splits.num_classes} classes, {splits.channels} channels; the "
                             f"checkpoint has {gen.num_classes} classes, {gen.channels} channels")
        rng = np.random.default_rng(args.seed)
        pick = rng.choice(len(splits.train), size=min(args.images, len(splits.train)), replace=False)
        subset = splits.train.subset(np.sort(pick))
        images, labels = subset.images_tensor(), torch.as_tensor(subset.targets).long()
        classes = _check_same_classes(gen, splits.classes, f"--data {args.data}")
    explorer = Explorer(gen, classes=classes or gen.class_names, images=images, labels=labels, n=args.n)
    server = make_server(explorer, host=args.host, port=args.port)
    host, port = server.server_address[:2]
    print(f"synthaug explore: {gen.generator_name} with {len(explorer.directions)} directions at "
          f"http://{'[' + host + ']' if ':' in host else host}:{port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _regex(text: str) -> str:
    """``--group-pattern``: refused by argparse (a usage error) when ``data.group_pattern``'s declaration refuses it
    (``synthaug data info`` takes it without a config, so it is checked here, by the config's own check)."""
    from .bench.grid_config import DataConfig
    from .options import check_value

    try:
        return check_value(DataConfig, "group_pattern", text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}; give one whose first group is the patient id, e.g. "
                                         r"'^(P\d+)_'") from None


def _add_data_options(parser: argparse.ArgumentParser, *, channels: bool = True, prefix: str = "") -> None:
    """The options of a folder data set, wherever a command loads one."""
    where = f" (config: {prefix}group_pattern)" if prefix else ""
    parser.add_argument("--group-pattern", metavar="REGEX", type=_regex,
                        help="folder data sets: a regex whose first group, searched in each file name, is the patient "
                             r"id, e.g. '^(P\d+)_'; without it every image is its own patient" + where)
    if channels:
        parser.add_argument("--channels", type=int, choices=(1, 3),
                            help="1 keeps grayscale folders one channel; 3 (default) converts to RGB"
                                 + (f" (config: {prefix}channels)" if prefix else ""))


def version() -> str:
    """The installed distribution's version; the package's ``__version__`` when it is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version("synthaug")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree (PYTHONPATH) without installing
        from ._version import __version__

        return __version__


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (importlib.metadata reads the installed files)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"synthaug {version()}")
        parser.exit()


def _gate_every(text: str) -> int:
    """``--gate-every N``: parsed as an integer here; bounded by ``generator.train.gate_every``'s declaration, which
    checks it as the config override it becomes."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of steps; give the steps between two checks of the quality gate, an integer "
            ">= 0 (e.g. 500; 0 turns early stopping off)") from None


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a generator on the training patients of a data set")
    from .presets import list_presets

    t_source = t.add_mutually_exclusive_group(required=True)
    t_source.add_argument("--preset", metavar="NAME", help="a generator preset installed with synthaug, e.g. "
                          f"cvae-malaria ({', '.join(list_presets('generators'))})")
    t_source.add_argument("--config", metavar="FILE", help="YAML, e.g. configs/generators/cvae-malaria.yaml")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry")
    t.add_argument("--out", help="output folder (default: out_dir of the config)")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    _add_data_options(t, prefix="data.")
    t.add_argument("--resume", action="store_true",
                   help="continue the training in --out from its last checkpoint (same result as an uninterrupted run)")
    t.add_argument("--gate-every", metavar="N", type=_gate_every,
                   help="every N steps, measure CAS on the validation patients and stop once the quality gate passes "
                        "(same as --set generator.train.gate_every=N; default 0: the whole budget)")
    t.add_argument("--log-with", metavar="TRACKERS", help="log to these Accelerate trackers, e.g. tensorboard (comma-separated; same as "
                        "--set log_with=NAME; they write into --out unless project_dir is set)")
    t.set_defaults(func=_cmd_train)


def _add_sample_command(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="sample from a generator checkpoint")
    s.add_argument("--checkpoint", required=True, help="folder with config.json and model.safetensors")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--labels", help=LABELS_HELP)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--grid", help="write a PNG grid here")
    s.add_argument("--nrow", type=int, default=8)
    s.add_argument("--output", help="write the uint8 samples as .npy here")
    s.add_argument("--pool", help="write a pool folder here (memory-mapped by SyntheticDataset and SyntheticMix)")
    s.set_defaults(func=_cmd_sample)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export", help="write samples as PNG files in class folders (the ImageFolder layout)")
    x.add_argument("--checkpoint", required=True, help="folder with config.json and model.safetensors")
    x.add_argument("--n", type=int, required=True, help="number of images, e.g. 1000 (default: balanced classes)")
    x.add_argument("--out", required=True, help="folder to write OUT/<class name>/<index>.png and OUT/export.json into")
    x.add_argument("--labels", help=LABELS_HELP)
    x.add_argument("--seed", type=int, default=0, help="same seed and batch size, same files")
    x.add_argument("--batch-size", type=int, default=256, help="images sampled at once")
    x.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out: replaces the files of a previous export there (listed in its "
                        "export.json) and same-named files; deletes nothing else")
    x.set_defaults(func=_cmd_export)


def _add_data_command(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("data", help="data sets: download, info")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    dl = dsub.add_parser("download", help="download and verify the NIH malaria archive (needs a network)")
    dl.add_argument("name", choices=["malaria"])
    dl.add_argument("--root", required=True, help="data root; the files go to ROOT/malaria-nih/cell_images")
    dl.add_argument("--manifest", help="optional manifest.csv with orig_sha256 per file to verify against")
    info = dsub.add_parser("info", help="load a data set and print its patient-level split")
    info.add_argument("name", help="malaria, medmnist:<flag>, or a folder of class sub-folders")
    info.add_argument("--root")
    info.add_argument("--image-size", type=int, default=32)
    info.add_argument("--seed", type=int, default=0)
    info.add_argument("--train-fraction", type=float, default=1.0)
    _add_data_options(info)
    d.set_defaults(func=_cmd_data)


def _add_explore_command(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("explore", help="a local page with sliders over a generator's latent directions")
    ex.add_argument("--checkpoint", required=True, help="folder with config.json and model.safetensors")
    ex.add_argument("--data", help="data set whose training images give a VAE its principal and concept directions, "
                                   "e.g. malaria")
    ex.add_argument("--root", help="data root (default: $SYNTHAUG_DATA)")
    ex.add_argument("--seed", type=int, default=0, help="split seed of --data (use the generator's)")
    _add_data_options(ex, channels=False)  # channels: the generator's
    ex.add_argument("--images", type=int, default=512, help="training images used for the directions")
    ex.add_argument("--n", type=int, default=8, help="samples shown at once")
    ex.add_argument("--host", default="127.0.0.1", help="loopback only: 127.0.0.1, localhost or ::1")
    ex.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    ex.set_defaults(func=_cmd_explore)


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("report", help="report.html and report.md of a benchmark run folder")
    rp.add_argument("run_dir", help="the folder benchmarks/run.py wrote, e.g. runs/malaria-quick")
    rp.add_argument("--out", help="write the report here (default: the run folder)")
    rp.set_defaults(func=_cmd_report)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    from .bench import launch as bench_launch

    bn = sub.add_parser("bench", help="the benchmark, real only vs real + synthetic: a packaged preset or a YAML file",
                        description="Run the benchmark without the repository: synthaug bench --preset malaria-quick "
                                    "(under several processes: accelerate launch -m synthaug.cli bench ...)")
    bench_launch.add_arguments(bn)
    bn.set_defaults(func=bench_launch.run)


def _add_list_command(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list registered generators")
    ls.add_argument("pattern", nargs="?", default="*")
    ls.set_defaults(func=_cmd_list)


def build_parser(prog: str = "synthaug") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Synthetic data augmentation for medical images.",
                                epilog="exit codes: 0 done, 1 an error while running, 2 a wrong command line or "
                                       "config, 130 Ctrl-C (docs/reliability.md)")
    p.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_train_command(sub)
    _add_sample_command(sub)
    _add_export_command(sub)
    _add_data_command(sub)
    _add_data_options(add_evaluate_command(sub, _cmd_evaluate), channels=False)  # channels: the generator's
    _add_explore_command(sub)
    _add_report_command(sub)
    _add_bench_command(sub)
    _add_list_command(sub)
    return p


def main(argv: list[str] | None = None, *, prog: str = "synthaug") -> int:
    """The command line: 0 done, 1 a runtime error, 2 a usage error, 130 Ctrl-C (``synthaug.failures``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    args.prog, args.argv = prog, argv  # what the command was, for a message that repeats it
    try:
        return args.func(args)
    except CommandStopped as stop:  # Ctrl-C or a full disk, said in one line by the command that knows its files
        print(f"{prog} {args.cmd}: {stop}", file=sys.stderr)
        return stop.code
    except KeyboardInterrupt:
        print(f"{prog} {args.cmd}: {interrupted(args.cmd)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except REPORTED as err:
        print(f"{prog} {args.cmd}: error: {err}", file=sys.stderr)
        return exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
