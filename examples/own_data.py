"""Your own data on the first day: a folder dataset without classes.txt, trained, evaluated, predicted, exported.

Writes a small folder dataset (images/{train,val}/*.jpg, masks/{train,val}/*.png holding class indices
0, 1 and 3, with 255 for pixels to ignore; no classes.txt), then runs the library's Python API on it:
``workflows.train`` (the class count comes from the masks: the highest label + 1, here 4, with a warning
that no mask holds 2), ``workflows.evaluate`` (the class count from the model), ``predict_files`` and
``export_onnx`` with a check in onnxruntime at batch 2 and a size the export did not trace. Tiny settings
(a 32-pixel dataset, timm's test_resnet, 2 epochs) so it runs in seconds on a CPU; the same steps on the
command line are in README.md ("Train on your own data"). The export needs ``pip install -e ".[export]"``.

    python examples/own_data.py --out runs/own_data
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from mfnet_zoo import load_model
from mfnet_zoo.data import DataOptions
from mfnet_zoo.export import check_onnx, export_onnx
from mfnet_zoo.predict import predict_files
from mfnet_zoo.presets import PRESETS
from mfnet_zoo.workflows import evaluate, train


def write_dataset(root: Path, sizes: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """Images with a bright box (class 1) and a dark box (class 3) on noise, and their masks; the top row is 255."""
    rng = np.random.default_rng(seed)
    for split, count in sizes.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(0, size // 2, 2)
            mask[y:y + size // 3, x:x + size // 3] = 1
            y, x = rng.integers(0, size // 2, 2)
            mask[y:y + size // 4, x:x + size // 2] = 3
            mask[0] = 255  # not annotated
            image = rng.normal(120, 20, (size, size, 3)) + np.select([mask == 1, mask == 3], [100, -90], 0)[..., None]
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / split / f"{i:03d}.jpg")
            Image.fromarray(mask).save(root / "masks" / split / f"{i:03d}.png")
    return root


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/own_data")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    out = Path(args.out)

    data = DataOptions("folder", root=write_dataset(out / "data", {"train": 16, "val": 4}))
    cfg = PRESETS["default"].replace(epochs=args.epochs, batch_size=4, crop_size=32, scale_range=None,
                                     optimizer="adamw", lr=4e-3, param_rules=())
    result = train("mfnet", cfg, out / "run", data=data, encoder="test_resnet", encoder_weights=None,
                   output_stride=8, progress=False)
    print(f"classes {result.classes}; run.json and model/ in {out / 'run'}")

    metrics = evaluate(out / "run" / "model", data=data, progress=False).metrics
    print(f"mIoU {metrics['mIoU']:.3f} on the val split")

    model = load_model(out / "run" / "model").eval()
    report = predict_files(model, [str(data.root / "images" / "val")], out / "predictions", progress=False)
    print(f"wrote {len(report.written)} prediction files to {out / 'predictions'}")

    onnx_path = export_onnx(model, out / "model.onnx", input_size=(32, 32))
    worst = check_onnx(model, onnx_path, [(2, 3, 48, 40)])  # a batch and a size not traced
    print(f"wrote {onnx_path}; onnxruntime at batch 2, 48 x 40: max |logits - torch's| {worst:.1e}")
    return {"classes": result.classes, "metrics": metrics, "predictions": report.written, "onnx": onnx_path,
            "onnx_error": worst}


if __name__ == "__main__":
    main()
