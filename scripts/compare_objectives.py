"""Pretrain several objectives with the same budget on the synthetic motion dataset and probe
each over several seeds: a thin wrapper over ``ssvrl sweep`` that adds the random-init baseline.

    .venv/bin/python scripts/compare_objectives.py --out runs/compare --background-mix 0.35 \\
        --seeds 0 1 experiments/cvrl/quickstart.yaml experiments/moco/quickstart.yaml ...

The dataset is written once into ``OUT/data`` (``SynthSpec`` with the given background mix:
higher values give each video a stronger static appearance, the shortcut FAME and MCL target).
``OUT/objectives.yaml`` is a sweep whose swept ``base`` is the given experiment files (as
``experiments/sweeps/objectives.yaml``), with only the data paths and ``--set`` overrides
changed, so the budget is whatever the YAML files say. The runs go to ``OUT/objectives/`` (one
child process each, ``--parallel N`` at a time; running the command again resumes), their table
to ``OUT/objectives/results.md``; a random-init probe per seed is the baseline
(``OUT/random_s<seed>/probe.json``). Without the baseline, the sweep alone is::

    ssvrl sweep OUT/objectives.yaml
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch  # noqa: F401  (before decord: decord2's libraries load NVBLAS)
import yaml

from ssvrl.cli import load_experiment
from ssvrl.config.overrides import load_yaml
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset
from ssvrl.sweep import make_plan, run_sweep, write_report
from ssvrl.sweep.plan import prepare_folders


def write_sweep(out: Path, configs: list[str], seeds: list[int], data: Path,
                extra: list[str]) -> Path:
    """``OUT/objectives.yaml``: the configs as a swept base, labelled ``<objective>/<file>``."""
    overrides: dict[str, Any] = {
        "data.root": str((data / "videos").resolve()),
        "data.annotations": str((data / "annotations").resolve()),
        "trainer.progress_bar": False,
    }
    for item in extra:
        key, _, text = item.partition("=")
        overrides[key.strip()] = load_yaml(text, f"--set {item!r}")
    labels = [f"{Path(c).parent.name}-{Path(c).stem}" for c in configs]
    sweep = {
        "name": "objectives",
        "out_dir": str(out.resolve()),
        "grid": {"base": {"values": [str(Path(c).resolve()) for c in configs], "labels": labels}},
        "seeds": seeds,
        "overrides": overrides,
        "evaluate": ["linear", "knn", "retrieval"],
    }
    path = out / "objectives.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False), encoding="utf-8")
    return path


def random_init(config: str, seed: int, data: Path, out: Path) -> float:
    """Linear-probe top-1 of the encoder at ``seed``'s random initialisation."""
    from ssvrl.engine.evaluate import run_probe

    cfg = load_experiment(config, [
        f"data.root={data / 'videos'}", f"data.annotations={data / 'annotations'}",
        f"out_dir={out}", f"name=random_s{seed}", f"seed={seed}",
    ])
    return float(run_probe(cfg, "random", out / f"random_s{seed}")["top1"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--background-mix", type=float, default=0.12)
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--set", nargs="*", default=[], help="extra k=v overrides for every run")
    args = parser.parse_args()
    data = args.out / "data"
    if not (data / "annotations" / "classInd.txt").is_file():
        write_synthetic_dataset(data, SynthSpec(seed=0, background_mix=args.background_mix))
    plan = make_plan(write_sweep(args.out, args.configs, args.seeds, data, args.set))
    prepare_folders(plan)
    code = run_sweep(plan, parallel=args.parallel)
    write_report(plan.sweep_dir)
    baseline = [random_init(args.configs[0], s, data, args.out) for s in args.seeds]
    std = statistics.stdev(baseline) if len(baseline) > 1 else 0.0
    print(f"\nbackground mix {args.background_mix}; probes on split 1\n")
    print((plan.sweep_dir / "results.md").read_text(encoding="utf-8"))
    print(f"random init, linear top-1: {statistics.mean(baseline):.1f} ± {std:.1f} "
          f"({len(baseline)} seeds: {', '.join(f'{v:.1f}' for v in baseline)})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
