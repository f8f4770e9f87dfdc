"""Benchmark machinery: tensor peak-memory counting, interleaved inference and training timing, the CLI,
and the scripts in benchmarks/ that write docs/benchmarks.md."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mfnet_zoo import create_model
from mfnet_zoo.benchmark import _interleaved, benchmark, benchmark_training, format_benchmark, paired_ratio
from mfnet_zoo.cli import main
from mfnet_zoo.layers import ASPP, FactorizationContext
from mfnet_zoo.profiling import peak_memory

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


def tiny(name="mfnet", **kwargs):
    return create_model(name, encoder="test_resnet", num_classes=3, **kwargs)


def test_peak_memory_counts_live_tensors_only():
    def chain():
        a = torch.ones(256, 1024)  # 1 MB
        b = a * 2  # 2 MB live
        del a
        c = b + 1  # b and c: 2 MB live again, never 3
        return c

    assert peak_memory(chain) == 2 * MB
    existing = torch.zeros(256, 1024)
    assert peak_memory(lambda: existing.view(-1).add_(1)) == 0  # views and in-place ops allocate nothing
    assert peak_memory(lambda: existing[:128].clone()) == MB // 2


def test_peak_memory_sees_backward_and_optimizer_state():
    w = torch.zeros(256, 1024, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.9)

    def step():
        (w * 3).sum().backward()
        optimizer.step()

    # w's gradient (1 MB) and SGD's momentum buffer (1 MB) are created in the first step only
    assert peak_memory(step) >= 2 * MB
    w.grad = None
    assert MB <= peak_memory(step) < 2 * MB


def test_benchmark_interleaves_and_reports_ratios():
    results = benchmark({"a": tiny().eval(), "b": lambda: tiny("emanet")}, size=48, runs=2, warmup=1)
    assert [r["model"] for r in results] == ["a", "b"]
    for r in results:
        assert r["median_ms"] >= r["min_ms"] > 0 and r["images_per_s"] > 0 and r["macs"] > 0
        assert r["peak_memory_mb"] > 0 and r["size"] == [48, 48]
    table = format_benchmark(results, reference="a")
    assert "| a |" in table and "1.00x |" in table
    assert all(len(r["rounds_ms"]) == 2 and min(r["rounds_ms"]) == r["min_ms"] for r in results)


def test_interleaved_rounds_alternate_the_order():
    """No model always runs first: even rounds in the given order, odd rounds reversed (warm-up in order)."""
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = _interleaved(steps, torch.device("cpu"), runs=3, warmup=1)
    assert calls == [*"abc", *"abc", *"cba", *"abc"]
    assert list(times) == [*"abc"] and all(len(t["rounds_ms"]) == 3 for t in times.values())


def test_paired_ratio_is_the_median_of_each_rounds_ratio():
    # the machine slows down 2x during round 3, after "fast" ran in it: the medians' ratio says 0.25 (10 / 40),
    # the rounds say 0.5 in 4 of 5
    results = [{"model": "fast", "rounds_ms": [10.0, 10.0, 10.0, 20.0, 20.0]},
               {"model": "ref", "rounds_ms": [20.0, 20.0, 40.0, 40.0, 40.0]},
               {"model": "odd", "rounds_ms": [10.0, 30.0, 20.0, 60.0, 40.0]}]
    assert paired_ratio(results, "fast", "ref") == 0.5 and paired_ratio(results, "odd", "ref") == 1.0
    with pytest.raises(ValueError, match=r"no results for 'smp'; measured: \['fast', 'odd', 'ref'\]"):
        paired_ratio(results, "fast", "smp")


def test_benchmark_blocks_on_feature_maps_bf16_channels_last_compiled():
    blocks = {"ctx": FactorizationContext(64, 32, rank=4, base_size=(5, 5)).eval().fuse(),
              "aspp": ASPP(64, 32)}
    results = benchmark(blocks, input_shape=(2, 64, 9, 9), runs=1, warmup=1, amp="bf16", channels_last=True,
                        compile="aot_eager")
    by = {r["model"]: r for r in results}
    assert by["ctx"]["size"] == [9, 9] and by["ctx"]["batch"] == 2
    assert by["ctx"]["macs"] < by["aspp"]["macs"]
    assert by["ctx"]["peak_memory_mb"] > 0


def test_benchmark_training_takes_real_steps():
    model = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    results = benchmark_training({"mfnet": model, "deeplab": lambda: tiny("deeplabv3plus")}, size=40, batch=2,
                                 runs=1, warmup=1)
    assert [r["model"] for r in results] == ["mfnet", "deeplab"]
    assert all(r["median_ms"] > 0 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in results)
    assert model.training and any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_benchmark_training_takes_foreign_outputs():
    import segmentation_models_pytorch as smp

    smp_model = smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=3)
    result, = benchmark_training({"smp": smp_model}, size=64, batch=2, runs=1, warmup=1, memory=False,
                                 num_classes=3)
    assert result["median_ms"] > 0 and "peak_memory_mb" not in result


@pytest.mark.parametrize("kwargs, match", [
    ({"runs": 0}, "runs must be an int >= 1, got 0"),
    ({"warmup": 0}, "warmup must be an int >= 1, got 0"),
    ({"amp": "fp8"}, "amp must be 'none', 'bf16' or 'fp16'"),
    ({"amp": "fp16"}, "needs a CUDA device"),
])
def test_benchmarks_reject_bad_settings_before_building(kwargs, match):
    def never():
        raise AssertionError("built a model before checking the arguments")

    with pytest.raises(ValueError, match=match):
        benchmark_training({"m": never}, **kwargs)
    if "warmup" not in kwargs:  # inference needs no warm-up
        with pytest.raises(ValueError, match=match):
            benchmark({"m": never}, **kwargs)


def test_cli_benchmark_train_and_inference(capsys):
    assert main(["benchmark", "mfnet_lite", "--size", "64", "--runs", "1", "--warmup", "1", "--train",
                 "--batch", "2", "--device", "cpu"]) == 0
    assert "| mfnet_lite |" in capsys.readouterr().out
    assert main(["benchmark", "mfnet_lite", "--size", "64", "--runs", "1", "--warmup", "1", "--amp", "bf16",
                 "--channels-last", "--no-macs", "--device", "cpu", "--json"]) == 0
    assert '"peak_memory_mb"' in capsys.readouterr().out


def _scripts():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu
        import run
    finally:
        sys.path.pop(0)
    return gpu, run


def _fast_accuracy():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fast_accuracy
    finally:
        sys.path.pop(0)
    return fast_accuracy


def test_gpu_section_is_replaced_in_place_and_kept_by_the_cpu_rerun():
    gpu, run = _scripts()
    block = "<!-- gpu:start -->\n## GPU\nold\n<!-- gpu:end -->"
    doc = gpu.upsert("# Benchmarks\n\ncpu tables\n", block)
    assert doc.endswith(block + "\n") and doc.startswith("# Benchmarks\n\ncpu tables\n")
    new = block.replace("old", "new")
    assert gpu.upsert(doc, new).count("<!-- gpu:start -->") == 1 and "new" in gpu.upsert(doc, new)
    rerun = run.with_kept_blocks("# Benchmarks\n\nnew cpu tables\n", doc)
    assert "new cpu tables" in rerun and block in rerun and "\ncpu tables" not in rerun
    first = run.with_kept_blocks("# Benchmarks\n", "")  # no GPU figures yet: a placeholder gpu.py replaces
    assert first.count("Not measured yet") == 2 and first.index("fast-accuracy:start") < first.index("gpu:start")
    assert "new" in gpu.upsert(first, new) and "Not measured yet: no GPU" not in gpu.upsert(first, new)


@pytest.mark.slow
def test_gpu_script_smoke_on_cpu(tmp_path):
    """benchmarks/gpu.py end to end on the CPU with tiny settings, so that it runs when a GPU is lent."""
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\ncpu tables\n")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--size", "32",
                    "--large", "32x64", "--train-batch", "2", "--infer-batch", "1", "--runs", "1", "--amp", "bf16",
                    "--compile-backend", "none", "--out", str(out), "--json", str(tmp_path / "gpu.json")],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\ncpu tables\n") and text.count("<!-- gpu:start -->") == 1
    for row in ("| mfnet_r50 |", "| mfnet_lite_r50 folded |", "| smp DeepLabV3Plus r50 OS16 |",
                "mfnet_r50 training >= 1.25x", "no compiled runs", "train img/s at 32 x 64", "| fast_deeplab_r50 |",
                "fast_deeplab_r50 eager inference <= 0.65x"):
        assert row in text  # the compiled path is tested on blocks above (aot_eager) and in test_toolchain
    assert (tmp_path / "gpu.json").is_file()


def test_fast_accuracy_page_leaves_an_undefined_orientation_out(tmp_path):
    """Regression: a global seed whose model predicts no object pixel has orientation NaN; the page crashed on it
    (statistics.stdev), after the run was saved, so --resume and --from-json could never finish."""
    fast_accuracy = _fast_accuracy()
    runs = [{"task": "global", "model": m, "seed": s, "mIoU": 0.2 + 0.1 * s, "orientation_acc": o,
             "reads_marker": o >= 0.95, "train_seconds": 1.0}
            for m, orientations in zip(fast_accuracy.MODELS, ((1.0, float("nan"), 0.5), (0.97, 0.99, 0.5)))
            for s, o in enumerate(orientations)]
    page = fast_accuracy.render({"command": "cmd", "planned": 24, "machine": "here", "fast_context": "pool",
                                  "runs": runs})
    assert "| global | 3 | 0.300 ± 0.100 | 0.300 ± 0.100 | +0.0000 | 0.2000 | yes |" in page
    assert "fast_deeplab 1 of 3 (orientation 0.750 ± 0.354 (1 undefined))" in page
    assert "smp DeepLabV3Plus 2 of 3 (orientation 0.820 ± 0.277)" in page
    assert "| global | fast_deeplab | 1 | 0.300 | nan |" in page


def test_run_py_plots_latency_against_macs(tmp_path):
    _, run = _scripts()
    table = {"a": {"macs": 2e9, "median_ms": 10.0, "parameters": 1_000_000},
             "smp DeepLabV3Plus r50 OS16": {"macs": 4e9, "median_ms": 30.0, "parameters": 3_000_000}}
    path = run.plot_models(table, tmp_path / "img" / "benchmarks.png", "title")
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (1000, 500)


@pytest.mark.slow
def test_fast_accuracy_script_smoke_and_page_from_json(tmp_path):
    """benchmarks/fast_accuracy.py --quick end to end (its long run is outside CI), then the page again from the
    JSON alone, byte for byte."""
    fast_accuracy = _fast_accuracy()
    result = fast_accuracy.main(["--quick", "--out-dir", str(tmp_path)])
    assert [(r["task"], r["model"]) for r in result["runs"]] == [
        (t, m) for t in fast_accuracy.TASKS for m in fast_accuracy.MODELS]
    assert all(0 <= r["mIoU"] <= 1 for r in result["runs"])
    page = (tmp_path / "fast-accuracy.md").read_text()
    assert all(f"| {task} | 1 |" in page for task in fast_accuracy.TASKS) and "read the distant marker" in page
    # --from-json: the same page byte for byte, and docs/benchmarks.md's section put before the GPU section; a
    # CPU rerun of benchmarks/run.py keeps both
    _, run_py = _scripts()
    (tmp_path / "benchmarks.md").write_text(run_py.with_kept_blocks("# Benchmarks\n\ncpu tables\n", ""))
    fast_accuracy.main(["--from-json", "--out-dir", str(tmp_path)])
    assert (tmp_path / "fast-accuracy.md").read_text() == page
    benchmarks = (tmp_path / "benchmarks.md").read_text()
    assert benchmarks.count("fast-accuracy:start") == 1 and "Not measured yet: `python benchmarks/fast_accuracy" \
        not in benchmarks and benchmarks.index("| demo | 1 |") < benchmarks.index("gpu:start")
    assert run_py.with_kept_blocks("# Benchmarks\n\nnew cpu tables\n", benchmarks).count("| demo | 1 |") == 1
    with pytest.raises(SystemExit, match="holds a quick run"):
        fast_accuracy.main(["--resume", "--out-dir", str(tmp_path)])
    # the fast model's build (arguments and initial weights) is recorded and its context named; runs of another
    # build are never resumed into: they are dropped and rerun, smp's (whose model did not change) kept. Here the
    # arguments are the same and the initial weights differ (as when the initialisation changed)
    built = create_model("fast_deeplab", encoder="test_resnet")
    assert result["fast_config"]["context"] == built.model_args["context"]
    assert len(result["fast_config"]["initial_weights_sha256"]) == 64
    assert result["fast_context"].startswith(built.model_args["context"])
    assert f"context: `{result['fast_context']}`" in page
    smp_runs = [r for r in result["runs"] if r["model"] != "fast_deeplab"]
    (tmp_path / "fast-accuracy.json").write_text(json.dumps(
        {**result, "fast_config": {**result["fast_config"], "initial_weights_sha256": "0" * 64}}))
    rerun = fast_accuracy.main(["--quick", "--resume", "--out-dir", str(tmp_path)])
    assert [r for r in rerun["runs"] if r["model"] != "fast_deeplab"] == smp_runs
    assert [(r["task"], r["model"]) for r in rerun["runs"]] == [
        (t, m) for t in fast_accuracy.TASKS for m in fast_accuracy.MODELS]
    page = (tmp_path / "fast-accuracy.md").read_text()
    assert rerun["smp_runs_from"] == result["command"] and "smp's runs are those of" in page
    # the dropped runs are kept as an earlier default, with what it was built with otherwise
    (earlier,) = rerun["superseded"]
    assert earlier["runs"] == [r for r in result["runs"] if r["model"] == "fast_deeplab"]
    assert earlier["command"] == result["command"] and "| other initial weights | 4 |" in page
    differs = fast_accuracy._built_otherwise
    assert differs({"a": 1, "b": [8, 4], "initial_weights_sha256": "x"}, {"a": 1, "b": [16, 8, 4]}) == "b=[8, 4]"
    assert differs(None, {"a": 1}) == "not recorded" and differs({"a": 1}, {"a": 1}) == "the same"


def test_fast_probes_smoke_builds_each_kind_and_rewrites_its_page_from_json(tmp_path):
    """benchmarks/fast_probes.py --quick on one variant of each kind (the library's models with an ASPP swapped in
    and smp's initialisation, smp's model with other arguments), then the page from the JSON alone; a JSON whose
    variants were defined otherwise is not resumed into."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fast_probes
    finally:
        sys.path.pop(0)
    chosen = ["fast separable aspp 6/12/18, smp init", "smp 64, rates 1/1/1"]
    built = fast_probes.build(chosen[0], 7)
    assert built.context.atrous_rates == (6, 12, 18) and built.context.separable
    # fast_deeplab as the probes ran: strides 8 and 4, 64 wide, no head conv
    assert built.decoder.skip_channels == (48, 32) and len(built.decoder.head) == 0
    assert abs(built.decoder.classifier.weight.std().item() / (2 / 71) ** 0.5 - 1) < 0.15  # smp's head: xavier
    # the others as every library model was when the probes ran: torch's default (a third of 1 / fan-in)
    default = fast_probes.build("fast pool, context 256", 7).decoder.classifier.weight
    assert abs(default.std().item() / (1 / (3 * 64)) ** 0.5 - 1) < 0.15
    result = fast_probes.main(["--quick", "--variants", *chosen, "--out-dir", str(tmp_path)])
    assert [r["model"] for r in result["runs"]] == chosen and all(0 <= r["mIoU"] <= 1 for r in result["runs"])
    page = (tmp_path / "fast-probes.md").read_text()
    assert f"| {chosen[0]} | fast_deeplab |" in page and f"| {chosen[1]} | smp |" in page
    assert all(f"| {name} | 0 |" in page for name in chosen)  # each run, seed 0
    fast_probes.main(["--from-json", "--out-dir", str(tmp_path)])
    assert (tmp_path / "fast-probes.md").read_text() == page
    saved = json.loads((tmp_path / "fast-probes.json").read_text())
    saved["variants"][chosen[1]][1]["decoder_atrous_rates"] = [2, 2, 2]
    (tmp_path / "fast-probes.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="other definitions of"):
        fast_probes.main(["--quick", "--resume", "--out-dir", str(tmp_path)])
