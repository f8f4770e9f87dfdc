"""Exact resume after SIGKILL, and DDP on torchrun (gloo, CPU) giving the single-process metrics."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from mfnet_zoo.train import load_checkpoint

TRAIN = [sys.executable, "-m", "mfnet_zoo", "train", "mfnet", "--encoder", "test_resnet", "--encoder-weights", "none",
         "--data", "synthetic", "--synthetic-size", "48", "--image-size", "32", "--crop-size", "32", "--epochs", "4",
         "--batch-size", "4", "--device", "cpu", "--no-progress"]


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


def epochs_done(out):
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path):
    straight = tmp_path / "straight"
    assert run(TRAIN + ["--out", str(straight)]).returncode == 0
    killed = tmp_path / "killed"
    process = subprocess.Popen(TRAIN + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while epochs_done(killed) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-run: at least 2 epochs saved, the 3rd under way or not
    process.wait()
    assert 2 <= epochs_done(killed) < 4, "the run was not interrupted; make the epochs longer"
    result = run(TRAIN + ["--out", str(killed), "--resume"])
    assert result.returncode == 0, result.stderr
    a, _ = load_checkpoint(straight / "last.pt")
    b, checkpoint = load_checkpoint(killed / "last.pt")
    assert checkpoint["epoch"] == 4 and epochs_done(killed) == 4
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_resume_refuses_a_corrupt_or_mismatched_checkpoint(tmp_path):
    from mfnet_zoo.cli import main

    out = tmp_path / "run"
    args = TRAIN[3:] + ["--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    good = (out / "last.pt").read_bytes()
    assert main(args[:-2] + ["--epochs", "2", "--out", str(out), "--resume"]) == 2  # another config
    (out / "last.pt").write_bytes(good[: len(good) // 2])
    assert main(args + ["--resume"]) == 2
    (out / "last.pt").write_bytes(good)  # the good checkpoint is still usable
    assert main(args + ["--resume"]) == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "mfnet_zoo"]
    result = run(torchrun + TRAIN[3:] + ["--epochs", "1", "--out", str(out)], env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert epochs_done(out) == 1 and (out / "last.pt").is_file()
    evaluate = ["eval", str(out / "last.pt"), "--data", "synthetic", "--synthetic-size", "48", "--image-size",
                "32", "--device", "cpu", "--no-progress", "--batch-size", "3"]
    single = run([sys.executable, "-m", "mfnet_zoo", *evaluate, "--out", str(tmp_path / "single.json")], env=env)
    double = run(torchrun + evaluate + ["--out", str(tmp_path / "double.json")], env=env)
    assert single.returncode == 0 and double.returncode == 0, double.stderr[-2000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("single.json", "double.json"))
    assert a["per_class_iou"] == pytest.approx(b["per_class_iou"], abs=1e-12) and a["mIoU"] == pytest.approx(b["mIoU"])
