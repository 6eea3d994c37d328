"""Pretrain several objectives with the same budget on the synthetic motion dataset and
linear-probe each, over several seeds; print a Markdown table (mean and std of top-1).

    .venv/bin/python scripts/compare_objectives.py --out runs/compare --background-mix 0.35 \\
        --seeds 0 1 experiments/cvrl/quickstart.yaml experiments/moco/quickstart.yaml ...

The dataset is written once into ``OUT/data`` (``SynthSpec`` with the given background mix:
higher values give each video a stronger static appearance, the shortcut FAME and MCL target).
Every run uses the experiment's own recipe with only the data paths, seed, name and output
folder overridden, so the budget is whatever the YAML files say (the quickstart YAMLs share
one). A random-init probe per seed is the baseline. Results also go to ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch  # noqa: F401  (before decord: decord2's libraries load NVBLAS)

from ssvrl.cli import load_experiment
from ssvrl.data.synthetic import SynthSpec, write_synthetic_dataset
from ssvrl.engine.build import fit
from ssvrl.engine.evaluate import run_probe


def run_one(config: str, seed: int, data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """Pretrain ``config`` with ``seed`` and probe its last checkpoint."""
    label = Path(config).parent.name + "/" + Path(config).stem
    cfg = load_experiment(
        config,
        [
            f"data.root={data / 'videos'}",
            f"data.annotations={data / 'annotations'}",
            f"out_dir={out}",
            f"name={label.replace('/', '_')}_s{seed}",
            f"seed={seed}",
            "trainer.progress_bar=false",
            *extra,
        ],
    )
    start = time.perf_counter()
    run_dir = fit(cfg)
    result = run_probe(cfg, str(run_dir / "checkpoints" / "last.ckpt"))
    return {
        "method": label,
        "seed": seed,
        "top1": result["top1"],
        "top5": result["top5"],
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "run_dir": str(run_dir),
    }


def random_init(config: str, seed: int, data: Path, out: Path) -> dict[str, Any]:
    cfg = load_experiment(
        config,
        [
            f"data.root={data / 'videos'}",
            f"data.annotations={data / 'annotations'}",
            f"out_dir={out}",
            f"name=random_s{seed}",
            f"seed={seed}",
        ],
    )
    result = run_probe(cfg, "random", out / f"random_s{seed}")
    return {"method": "random init", "seed": seed, "top1": result["top1"], "top5": result["top5"]}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | top-1 mean | top-1 std | seeds | per seed |", "|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        vals = [r["top1"] for r in rows if r["method"] == method]
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        per = ", ".join(f"{v:.1f}" for v in vals)
        mean = statistics.mean(vals)
        lines.append(f"| {method} | {mean:.1f} | {std:.1f} | {len(vals)} | {per} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--background-mix", type=float, default=0.12)
    parser.add_argument("--set", nargs="*", default=[], help="extra k=v overrides for every run")
    args = parser.parse_args()
    data = args.out / "data"
    if not (data / "annotations" / "classInd.txt").is_file():
        write_synthetic_dataset(data, SynthSpec(seed=0, background_mix=args.background_mix))
    rows = [random_init(args.configs[0], s, data, args.out) for s in args.seeds]
    for config in args.configs:
        for seed in args.seeds:
            rows.append(run_one(config, seed, data, args.out, args.set))
            (args.out / "results.json").write_text(json.dumps(rows, indent=1))
            print(table(rows), flush=True)
    print(f"\nbackground mix {args.background_mix}; linear-probe top-1 (%) on split 1\n")
    print(table(rows))


if __name__ == "__main__":
    main()
