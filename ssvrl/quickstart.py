"""The quickstart (the README's main job): synthetic videos -> CVRL -> linear probe vs random.

Writes the synthetic motion dataset as real AVI files (once), pretrains CVRL on it with the
``experiments/cvrl/quickstart.yaml`` recipe, probes the pretrained and the random-init encoder
with the same protocol, prints a table and writes ``quickstart.json`` next to the runs.
``config`` swaps the recipe (e.g. ``experiments/svt/quickstart.yaml``) on the same data; for
objectives with an EMA teacher (SVT, MoCo) the teacher's encoder is probed too.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ssvrl.data.synthetic import SynthSpec

log = logging.getLogger("ssvrl")
CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "cvrl" / "quickstart.yaml"


def run_quickstart(
    out: Path, overrides: list[str], spec: SynthSpec | None = None, config: Path = CONFIG
) -> dict:
    """Run the whole quickstart into ``out``; ``spec`` replaces the default synthetic dataset,
    ``config`` the CVRL recipe."""
    from ssvrl.backbones.base import NoTeacherError, find_teacher
    from ssvrl.cli import load_experiment
    from ssvrl.data.synthetic import write_synthetic_dataset
    from ssvrl.engine.build import fit
    from ssvrl.engine.evaluate import format_table, run_probe

    t0 = time.perf_counter()
    data = out / "data"
    if not (data / "annotations" / "classInd.txt").is_file():
        log.info("writing the synthetic motion dataset to %s", data)
        write_synthetic_dataset(data, spec or SynthSpec(seed=0))
    t_data = time.perf_counter() - t0
    cfg = load_experiment(
        str(config),
        [
            f"data.root={data / 'videos'}",
            f"data.annotations={data / 'annotations'}",
            f"out_dir={out}",
            *overrides,
        ],
    )
    t1 = time.perf_counter()
    run_dir = fit(cfg)
    t_fit = time.perf_counter() - t1
    t2 = time.perf_counter()
    last = run_dir / "checkpoints" / "last.ckpt"
    pre = run_probe(cfg, str(last))
    rnd = run_probe(cfg, "random", run_dir / "probe_random")
    method = cfg.objective.name.upper()
    rows = [("random init", rnd), (f"{method} pretrained", pre)]
    try:
        find_teacher(last)
        teacher = run_probe(cfg, f"{last}:teacher", run_dir / "probe_teacher")
        rows.append((f"{method} EMA teacher", teacher))
    except NoTeacherError:
        teacher = None
    t_probe = time.perf_counter() - t2
    table = format_table(rows)
    summary = {
        "run_dir": str(run_dir),
        "objective": cfg.objective.name,
        "pretrained": pre,
        "random_init": rnd,
        "gain_top1": pre["top1"] - rnd["top1"],
        **({"teacher": teacher, "teacher_gain_top1": teacher["top1"] - rnd["top1"]}
           if teacher else {}),
        "seconds": {
            "data": round(t_data, 1),
            "pretrain": round(t_fit, 1),
            "probes": round(t_probe, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
    }
    (run_dir / "quickstart.json").write_text(json.dumps(summary, indent=2))
    print("\nLinear probe on the synthetic motion dataset (test split 1):\n" + table)
    print(f"\ngain: {summary['gain_top1']:+.1f} top-1 points; times (s): {summary['seconds']}")
    print(f"run folder: {run_dir}")
    return summary
