"""``ssvrl data synth | check | prepare``: the dataset tools of the command line (``ssvrl.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssvrl.config.loader import ConfigError


def cmd_synth(args: argparse.Namespace) -> int:
    from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset

    chosen = {
        "seed": args.seed,
        "num_classes": args.classes,
        "groups": args.groups,
        "clips_per_group": args.clips_per_group,
        "frames": args.frames,
        "size": args.size,
        "container": args.container,
        "style": args.style,
        "background_mix": args.background_mix,
        "dots": args.dots and tuple(args.dots),
        "dot_speed": args.dot_speed and tuple(args.dot_speed),
        "dot_angular_speed": args.dot_angular_speed and tuple(args.dot_angular_speed),
    }
    spec = SynthSpec(**{k: v for k, v in chosen.items() if v is not None})
    summary = write_synthetic_dataset(args.out, spec, workers=args.workers, progress=True)
    print(
        f"wrote {summary.num_videos} videos to {Path(args.out).resolve()} "
        f"in {summary.seconds:.1f} s"
    )
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from ssvrl.cli import load_experiment

    cfg = load_experiment(args.config, args.overrides)
    from ssvrl.data.check import check_dataset, format_summary, outputs

    out = Path(args.out) if args.out else Path(cfg.out_dir) / cfg.name / "data_check"
    timeout = args.timeout if args.timeout is not None else cfg.data.decode_timeout or 60.0
    report = check_dataset(cfg, workers=args.workers, timeout=timeout, out_dir=out)
    print(format_summary(report))
    print("\n".join(outputs(report)))
    return 1 if report.bad else 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from ssvrl.data.encode import DEFAULT_CODECS, EncodeSettings
    from ssvrl.data.prepare import check_paths, format_summary, prepare_dataset

    codecs = dict(DEFAULT_CODECS)
    for item in args.codec:
        ext, sep, codec = item.partition("=")
        if not sep or not codec:
            raise ConfigError(f"--codec expects EXT=CODEC (e.g. .avi=mpeg4), got {item!r}")
        codecs["." + ext.lower().lstrip(".")] = codec
    try:
        settings = EncodeSettings(args.short_side, args.gop, args.crf, codecs)
        check_paths(Path(args.src), Path(args.dst))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    summary = prepare_dataset(
        args.src, args.dst, settings, workers=args.workers, timeout=args.timeout
    )
    print(format_summary(summary))
    return 1 if summary.failed else 0


def add_data_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``data`` command and its subcommands on ``sub`` (``ssvrl``'s subparsers)."""
    d = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_cmd", required=True)
    s = d.add_parser("synth", help="write the synthetic motion dataset as real video files")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=None, help="default: SynthSpec's")
    s.add_argument("--classes", type=int, default=None, help="default: SynthSpec's")
    s.add_argument("--groups", type=int, default=None, help="default: SynthSpec's")
    s.add_argument("--clips-per-group", type=int, default=None, help="default: SynthSpec's")
    s.add_argument("--frames", type=int, default=None, help="default: SynthSpec's")
    s.add_argument("--size", type=int, default=None, help="default: SynthSpec's")
    s.add_argument("--container", choices=["avi", "mp4"], default=None)
    s.add_argument("--style", choices=["dots", "objects"], default=None)
    s.add_argument("--background-mix", type=float, default=None,
                   help="dots style: strength of the static background texture, 0..1")
    # dots style, per-video ranges; equal ends fix a nuisance factor every view of a video
    # would otherwise share (a cue that objectives without negatives, e.g. SVT, latch onto)
    s.add_argument("--dots", type=int, nargs=2, metavar=("MIN", "MAX"), default=None)
    s.add_argument("--dot-speed", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="px per frame (translation and radial classes)")
    s.add_argument("--dot-angular-speed", type=float, nargs=2, metavar=("MIN", "MAX"),
                   default=None, help="degrees per frame (rotation classes)")
    s.add_argument("--workers", type=int, default=None)
    s.set_defaults(func=cmd_synth)
    c = d.add_parser("check", help="decode every video of CONFIG's dataset; report bad files")
    c.add_argument("config")
    c.add_argument("overrides", nargs="*")
    c.add_argument("--workers", type=int, default=None, help="probe processes (default: CPUs)")
    c.add_argument("--timeout", type=float, default=None,
                   help="seconds per video, a hang = bad (default: data.decode_timeout)")
    c.add_argument("--out", default=None,
                   help="report folder (default: <out_dir>/<name>/data_check)")
    c.set_defaults(func=cmd_data_check)
    r = d.add_parser("prepare", help="re-encode SRC into DST: short side, short GOP, no B-frames")
    r.add_argument("src")
    r.add_argument("dst")
    r.add_argument("--short-side", type=int, default=128, help="never upscales; sides even")
    r.add_argument("--gop", type=int, default=16, help="frames between keyframes")
    r.add_argument("--crf", type=int, default=23, help="libx264 quality (lower: better)")
    r.add_argument("--codec", action="append", default=[], metavar="EXT=CODEC",
                   help="codec per extension, repeatable (default .mp4/.mkv/.mov=libx264, "
                   ".avi=mpeg4, .webm=libvpx-vp9)")
    r.add_argument("--workers", type=int, default=None, help="encoding processes (default: CPUs)")
    r.add_argument("--timeout", type=float, default=600.0, help="seconds per video")
    r.set_defaults(func=cmd_data_prepare)
