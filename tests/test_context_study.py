"""benchmarks/context_study.py in its quick mode (one seed, one short epoch): every context trains and is scored,
the page, plot and JSON are written, and the scenes keep the marker beyond the receptive field it measures."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_study():
    if "context_study" not in sys.modules:  # registered first: its dataclass resolves annotations through it
        spec = importlib.util.spec_from_file_location("context_study", ROOT / "benchmarks" / "context_study.py")
        module = sys.modules["context_study"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["context_study"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    study = load_study()
    return study, study.main(["--quick", "--out-dir", str(out)]), out


def test_quick_study_trains_and_scores_every_context_on_every_family(quick):
    study, result, out = quick
    assert [(r["family"], r["context"]) for r in result["runs"]] == [
        (f, c) for f in study.FAMILIES for c in study.CONTEXT_ORDER]
    for run in result["runs"]:
        assert 0.0 <= run["mIoU"] <= 1.0 and len(run["per_class_iou"]) == 7
        assert math.isnan(run["orientation_acc"]) or 0.0 <= run["orientation_acc"] <= 1.0
    saved = json.loads((out / "context-study.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(result["runs"]))
    assert set(saved["summary"]) == set(study.FAMILIES)
    assert saved["command"] == f"python benchmarks/context_study.py --quick --out-dir {out}"


def test_quick_study_costs_every_context(quick):
    study, result, _ = quick
    assert list(result["cost"]) == list(study.CONTEXT_ORDER)
    for name, entry in result["cost"].items():
        for part in ("context", "model"):
            assert entry[part]["parameters"] > 0 and entry[part]["macs"] > 0 and entry[part]["median_ms"] > 0
    # ASPP is the heaviest block, the projection alone the lightest
    params = {name: entry["context"]["parameters"] for name, entry in result["cost"].items()}
    assert min(params, key=params.get) == "none" and max(params, key=params.get) == "aspp"


def test_marker_lies_beyond_the_measured_receptive_field(quick):
    _, result, _ = quick
    field = result["receptive_field"]
    # the logits see further than the encoder (the decoder adds its convs), and neither sees from object to marker
    assert 0 < field["theoretical"]["encoder"] < field["theoretical"]["logits"] < field["marker_gap"]
    trained = field["trained"]
    assert 0 < trained["encoder"]["r50"] <= trained["encoder"]["r95"] <= trained["encoder"]["reach"]


def test_quick_study_writes_the_page_and_the_plot(quick):
    study, result, out = quick
    page = (out / "context-study.md").read_text()
    for context in study.CONTEXT_ORDER:
        assert f"| `{context}` |" in page
    assert "(one seed)" in page and "python benchmarks/context_study.py --quick" in page
    for name in ("context_study.png", "context_study_scenes.png"):
        assert (out / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_orientation_accuracy_reads_the_shape_pairs():
    import torch

    study = load_study()
    confusion = torch.zeros(7, 7, dtype=torch.int64)
    confusion[1, 1], confusion[1, 2] = 30, 10  # circle-v: 30 right, 10 with the wrong orientation
    confusion[4, 3], confusion[5, 0] = 20, 99  # square-h all flipped; triangle pixels missed (not counted)
    assert study.orientation_accuracy(confusion) == pytest.approx(30 / 60)
    assert math.isnan(study.orientation_accuracy(torch.zeros(7, 7, dtype=torch.int64)))
