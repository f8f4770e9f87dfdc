"""Copy the demo's pictures into the documentation (docs/img/), so the site shows what the demo makes.

    python benchmarks/docs_figures.py                  # runs `mfnet-zoo demo` first (a few minutes on a CPU)
    python benchmarks/docs_figures.py --from runs/demo # takes the pictures of a demo that already ran

benchmarks/run.py writes docs/img/benchmarks.png itself.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {"predictions.png": "demo_predictions.png", "curves.png": "demo_curves.png"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="a demo output folder (default: run the demo now)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(args.source) if args.source else Path(scratch)
        if not args.source:
            from mfnet_zoo.demo import run_demo

            run_demo(source, progress=False)
        missing = [name for name in FIGURES if not (source / name).is_file()]
        if missing:
            raise SystemExit(f"{source} has no {missing}: is it a `mfnet-zoo demo` output folder?")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, target in FIGURES.items():
            shutil.copyfile(source / name, out / target)
            print(f"wrote {out / target}")


if __name__ == "__main__":
    main()
