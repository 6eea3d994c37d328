"""``ssvrl`` / ``python -m ssvrl``: quickstart, fit, probe, sweep, data synth/check/prepare.

Exit codes: 0 success; 2 bad usage or config (the message names the key or file); 1 a failure
during the run; 143 ``fit`` stopped by SIGTERM after writing its checkpoint (resumable).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ssvrl.cli_data import add_data_parser
from ssvrl.config.loader import ConfigError

log = logging.getLogger("ssvrl")
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(path: str | None, overrides: Sequence[str]):  # -> ExperimentConfig
    from ssvrl.config.loader import load_config
    from ssvrl.config.schema import schema_for

    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    return load_config(path, list(overrides), schema_for)


def cmd_fit(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, args.overrides)  # config errors before heavy imports
    if args.force_resume and not args.resume:
        raise ConfigError("--force-resume needs --resume PATH|auto")
    from ssvrl.engine.build import fit
    from ssvrl.engine.preemption import EXIT_PREEMPTED, Preempted, resume_command
    from ssvrl.engine.resume import resolve_resume
    from ssvrl.engine.run_dir import launch_rank

    ckpt = resolve_resume(cfg, args.resume) if args.resume else None
    try:
        run_dir = fit(cfg, ckpt, force_resume=args.force_resume)
    except Preempted as stop:
        if launch_rank(cfg.trainer.devices) == 0:
            again = resume_command(args.config, args.overrides, stop.checkpoint)
            print(f"ssvrl: {stop}; to resume: {again}", file=sys.stderr)
        return EXIT_PREEMPTED
    print(f"run folder: {run_dir}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    # `--checkpoints A B key=value`: argparse hands trailing overrides to --checkpoints
    specs = [c for c in args.checkpoints or [] if "=" not in c or Path(c).exists()]
    overrides = [*args.overrides, *(c for c in args.checkpoints or [] if c not in specs)]
    cfg = load_experiment(args.config, overrides)
    if args.plot and not any(c != "random" for c in specs or [cfg.probe.checkpoint]):
        raise ConfigError("--plot needs at least one checkpoint (not only 'random')")
    from ssvrl.engine.evaluate import run_probes
    from ssvrl.eval.distributed import init_from_env
    from ssvrl.eval.report import format_table, plot_over_epochs
    from ssvrl.utils.dist import rank

    init_from_env()  # under torchrun: every rank extracts a shard
    rows = run_probes(cfg, specs or [cfg.probe.checkpoint], Path(args.out) if args.out else None)
    if rank() == 0:
        print(format_table(rows))
        if args.plot:
            print(f"wrote {plot_over_epochs(rows, Path(args.plot))}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, args.overrides)
    from ssvrl.eval.extract import check_extract_config, dataset_videos, run_extract
    from ssvrl.eval.extract_inputs import videos_from_path
    from ssvrl.eval.extract_output import ProtocolMismatch

    check_extract_config(cfg)
    if args.videos:
        try:
            items = videos_from_path(Path(args.videos), cfg.data.frame_template)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    else:
        items = dataset_videos(cfg)
    try:
        summary = run_extract(cfg, items, Path(args.out))
    except ProtocolMismatch as err:
        raise ConfigError(str(err)) from err
    print(
        f"{summary['num_written']} written, {summary['num_kept']} already there, "
        f"{summary['num_bad']} unreadable: {Path(args.out) / 'extract.json'}"
    )
    return 1 if summary["num_bad"] else 0  # features are missing: let scripts notice


def cmd_finetune(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, args.overrides)
    from ssvrl.engine.finetune import format_table, run_finetune

    result = run_finetune(cfg, cfg.finetune.checkpoint, Path(args.out) if args.out else None)
    if result:  # empty on DDP ranks other than 0
        print(format_table([(result["checkpoint"], result)]))
        print(f"results: {Path(result['out_dir']) / 'finetune.json'}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from ssvrl.quickstart import run_quickstart

    if args.config:
        run_quickstart(Path(args.out), list(args.overrides), config=Path(args.config))
    else:
        run_quickstart(Path(args.out), list(args.overrides))
    return 0


def cmd_views(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, args.overrides)
    from ssvrl.engine.views import render_views

    gif = Path(args.gif) if args.gif else None
    path = render_views(cfg, Path(args.out), videos=args.videos, frames=args.frames, gif=gif)
    print(f"wrote {path}" + (f" and {gif}" if gif else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ssvrl.export import export_encoder, export_source

    cfg, ckpt = export_source(args.target, args.overrides, args.checkpoint)
    meta = export_encoder(cfg, ckpt, Path(args.out))
    print(f"wrote {args.out}: {meta['backbone']} {meta['backbone_options']}, "
          f"{meta['feature_dim']} features, from {meta['checkpoint']}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ssvrl.sweep.command import run_command

    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssvrl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser(
        "quickstart", help="synthetic videos -> CVRL (or --config) -> linear probe vs random init"
    )
    q.add_argument("--out", default="lightning_logs/quickstart")
    q.add_argument("--config", default=None,
                   help="the recipe (default: experiments/cvrl/quickstart.yaml), e.g. "
                   "experiments/svt/quickstart.yaml")
    q.add_argument("overrides", nargs="*", help="key=value overrides of the quickstart config")
    q.set_defaults(func=cmd_quickstart)
    f = sub.add_parser("fit", help="pretrain: ssvrl fit CONFIG [key=value ...] [--resume ...]")
    f.add_argument("config")
    f.add_argument("overrides", nargs="*")
    f.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="continue a run exactly from a checkpoint; auto: the newest "
                   "<out_dir>/<name>/version_*/checkpoints/last.ckpt")
    f.add_argument("--force-resume", action="store_true",
                   help="resume even when the config changed in keys that change results")
    f.set_defaults(func=cmd_fit)
    pr = sub.add_parser(
        "probe", help="linear probe, kNN, retrieval: ssvrl probe CONFIG [--checkpoints A B ...]"
    )
    pr.add_argument("config")
    pr.add_argument("overrides", nargs="*")
    pr.add_argument("--out", default=None, help="folder for probe.json (default: the run's)")
    pr.add_argument("--checkpoints", nargs="+", default=None, metavar="CKPT",
                    help="checkpoints to compare in one table: paths, 'last', 'random'; "
                    "append ':teacher' for the EMA teacher's encoder of an svt or moco run, "
                    "e.g. 'last last:teacher' (default: probe.checkpoint)")
    pr.add_argument("--plot", default=None, metavar="PNG",
                    help="write linear and kNN top-1 over the checkpoints' epochs")
    pr.set_defaults(func=cmd_probe)
    ex = sub.add_parser(
        "extract", help="sliding-window features of untrimmed videos, one .npy per video"
    )
    ex.add_argument("config")
    ex.add_argument("overrides", nargs="*")
    ex.add_argument("--out", required=True, help="folder for <video>.npy and extract.json")
    ex.add_argument("--videos", default=None,
                    help="a folder (scanned recursively), a video, or a text file of paths "
                    "(default: the config's dataset, train and test); exit code 1 when a "
                    "video was unreadable (listed in extract.json)")
    ex.set_defaults(func=cmd_extract)
    ft = sub.add_parser(
        "finetune", help="fine-tune encoder + classifier end to end, multi-clip test"
    )
    ft.add_argument("config")
    ft.add_argument("overrides", nargs="*", help="key=value, e.g. finetune.checkpoint=random")
    ft.add_argument("--out", default=None,
                    help="folder for finetune.json and logs (default: <run>/finetune_<ckpt>)")
    ft.set_defaults(func=cmd_finetune)
    v = sub.add_parser("views", help="a picture of the augmented views: ssvrl views CONFIG")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.add_argument("--out", default="views.png")
    v.add_argument("--videos", type=int, default=4, help="rows: training videos to sample")
    v.add_argument("--frames", type=int, default=4, help="frames shown per view")
    v.add_argument("--gif", default=None, help="also write the grid animated over time (GIF)")
    v.set_defaults(func=cmd_views)
    e = sub.add_parser("export", help="the encoder as safetensors: ssvrl export CONFIG_OR_CKPT")
    e.add_argument("target", help="experiment CONFIG (.yaml) or a run's checkpoint (.ckpt)")
    e.add_argument("overrides", nargs="*")
    e.add_argument("--out", required=True, help="the .safetensors file to write")
    e.add_argument("--checkpoint", default=None,
                   help="with a CONFIG: 'last' (default), 'random' or a checkpoint path")
    e.set_defaults(func=cmd_export)
    sw = sub.add_parser(
        "sweep", help="ablation sweep from YAML: ssvrl sweep FILE [--dry-run|--report|--slurm]"
    )
    from ssvrl.sweep.command import add_arguments as add_sweep_arguments

    add_sweep_arguments(sw)
    sw.set_defaults(func=cmd_sweep)
    add_data_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(f"ssvrl: config error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001  (report any run failure as exit 1 with its message)
        log.exception("run failed: %s", err)
        return 1
