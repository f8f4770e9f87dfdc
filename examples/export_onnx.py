"""Export a model to ONNX (dynamic batch, height and width) and run it with onnxruntime.

The static factorization context is folded first (model.reparameterize()): one 1x1 conv plus
a constant map instead of two 1x1 convs, same outputs. Needs `pip install -e ".[export]"`.

    python examples/export_onnx.py --out model.onnx
"""
import argparse

import numpy as np
import onnxruntime as ort
import torch

import mfnet_zoo
from mfnet_zoo.export import export_onnx


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mfnet")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--out", default="model.onnx")
    args = parser.parse_args(argv)

    model = mfnet_zoo.create_model(args.model, encoder=args.encoder, num_classes=6).eval().reparameterize()
    export_onnx(model, args.out, input_size=(64, 64))
    session = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    worst = 0.0
    for shape in [(1, 3, 64, 64), (2, 3, 120, 96)]:  # other sizes than the one traced
        x = torch.randn(shape)
        logits = session.run(["logits"], {"images": x.numpy()})[0]
        with torch.no_grad():
            worst = max(worst, float(np.abs(logits - model(x).logits.numpy()).max()))
        print(f"{shape} -> {logits.shape}")
    print(f"max |onnxruntime - torch| = {worst:.2e}")
    return worst


if __name__ == "__main__":
    main()
