"""Does the suite catch a broken model? Apply hand-made one-line bugs, one at a time, to a copy of the
repository and run the tests that should catch each; print which test failed, or that none did.

    python tools/hand_made_bugs.py                  # every bug, on HEAD
    python tools/hand_made_bugs.py predict-norm ema-momentum
    python tools/hand_made_bugs.py --rev 84ee68e    # the same bugs against an older commit's code and tests
    python tools/hand_made_bugs.py --list

Each bug replaces one line of the library (the old text must occur exactly once: a bug that no longer applies
is reported as such). The copy is ``git archive REV`` in a temporary folder, so the working tree is never
touched; the tests run there with ``-x`` (the first failure names the catching test) and ``-p no:cacheprovider``.
Slow tests are included: some bugs are caught only there.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Bug:
    area: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


FACTORIZATION, EMA = "mfnet_zoo/layers/factorization.py", "mfnet_zoo/layers/ema.py"
BUGS = {
    # predict: images not normalised with the model's mean and std
    "predict-norm": Bug("predict", "mfnet_zoo/predict.py", "images = (images.float() / 255 - mean) / std",
                        "images = images.float() / 255", ("tests/test_inference.py",)),
    # evaluate: the protocol ignored (always full images)
    "eval-protocol": Bug("evaluate", "mfnet_zoo/workflows.py",
                         "dataset, classes = data.build(split, build_eval_transforms(protocol, crop_size,",
                         "dataset, classes = data.build(split, build_eval_transforms(\"full\", crop_size,",
                         ("tests/test_inference.py", "tests/test_cli.py")),
    # test-time augmentation: the flipped view's logits not flipped back
    "tta-flip": Bug("predict", "mfnet_zoo/inference.py", "logits = logits.flip(-1) if flipped else logits",
                    "logits = logits", ("tests/test_inference.py",)),
    # context block: the static factorization's low-rank term lost
    "static-zero": Bug("context block", FACTORIZATION,
                       "context = F.interpolate(F.relu(low_rank), size=(h, w)",
                       "context = F.interpolate(F.relu(low_rank * 0), size=(h, w)",
                       ("tests/test_layers.py", "tests/test_models.py")),
    # context block: EMA's moving average of the bases with the wrong momentum
    "ema-momentum": Bug("context block", EMA,
                        "self.mu.mul_(self.momentum).add_(mu.mean(dim=0, keepdim=True), alpha=1.0 - self.momentum)",
                        "self.mu.mul_(0.99).add_(mu.mean(dim=0, keepdim=True), alpha=0.01)",
                        ("tests/test_rules.py", "tests/test_layers.py", "tests/test_models.py")),
    # context block: one NMF update too few
    "nmf-steps": Bug("context block", FACTORIZATION, "for _ in range(steps):", "for _ in range(steps - 1):",
                     ("tests/test_rules.py", "tests/test_layers.py")),
    # folding: the folded constant map replaced by its spatial mean
    "fold-mean": Bug("folding", FACTORIZATION,
                     "return FoldedFactorizationContext(weight.to(dtype), bias_map.to(dtype))",
                     "return FoldedFactorizationContext(weight.to(dtype), "
                     "bias_map.mean(dim=(2, 3), keepdim=True).expand_as(bias_map).to(dtype))",
                     ("tests/test_layers.py", "tests/test_models.py")),
    # export: the static context dropped only in exported graphs
    "export-context": Bug("export", FACTORIZATION,
                          "context = F.interpolate(F.relu(low_rank), size=(h, w)",
                          "context = F.interpolate(F.relu(low_rank) * (not torch.compiler.is_exporting()), "
                          "size=(h, w)", ("tests/test_export.py", "tests/test_toolchain.py", "tests/test_models.py")),
    # training engine: accumulated micro-batches not averaged (the update is grad_accum_steps times too large)
    "accum-scale": Bug("training engine", "mfnet_zoo/train.py",
                       "(scaler.scale(loss) if scaler is not None else loss).div(grad_accum_steps).backward()",
                       "(scaler.scale(loss) if scaler is not None else loss).backward()",
                       ("tests/test_rules.py", "tests/test_train.py", "tests/test_preemption.py",
                        "tests/test_ddp_equivalence.py")),
    # training engine: a mid-epoch resume keeps the epoch's starting RNG states (other augmentation)
    "resume-rng": Bug("training engine", "mfnet_zoo/train.py", "        self.then()\n", "        pass\n",
                      ("tests/test_preemption.py",)),
}


def run_bug(name: str, rev: str) -> tuple[str, str, float]:
    """(verdict, detail, seconds) of bug ``name`` on a fresh copy of ``rev``."""
    bug = BUGS[name]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        source = Path(tmp, bug.path)
        text = source.read_text()
        if text.count(bug.old) != 1:
            return "does not apply", f"{bug.path}: the line occurs {text.count(bug.old)} times", 0.0
        source.write_text(text.replace(bug.old, bug.new))
        tests = [t for t in bug.tests if Path(tmp, t).exists()]
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m",
                                 "not cuda", *tests], cwd=tmp, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": tmp})
        failed = [line.removeprefix("FAILED ").split(" - ")[0] for line in result.stdout.splitlines()
                  if line.startswith(("FAILED", "ERROR"))]
        if failed:
            return "caught", failed[0], time.perf_counter() - start
        summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        return ("NOT CAUGHT" if result.returncode == 0 else f"pytest exit {result.returncode}"), summary, \
            time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bugs", nargs="*", help=f"some of {', '.join(BUGS)} (default: all)")
    parser.add_argument("--rev", default="HEAD", help="the commit whose code and tests to break (default HEAD)")
    parser.add_argument("--list", action="store_true", help="print the bugs as diffs and exit")
    args = parser.parse_args()
    unknown = sorted(set(args.bugs) - set(BUGS))
    if unknown:
        parser.error(f"unknown bug(s) {unknown}; known: {', '.join(BUGS)}")
    if args.list:
        for name, bug in BUGS.items():
            print(f"{name} ({bug.area}, {bug.path}):\n- {bug.old.strip()}\n+ {bug.new.strip()}\n")
        return 0
    missed = 0
    print("| bug | area | verdict | first failing test / pytest's summary | s |\n|---|---|---|---|---|")
    for name in args.bugs or BUGS:
        verdict, detail, seconds = run_bug(name, args.rev)
        missed += verdict != "caught"
        print(f"| {name} | {BUGS[name].area} | {verdict} | {detail} | {seconds:.0f} |", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
