"""Swap the ASPP of a segmentation-models-pytorch DeepLabV3+ for FactorizationContext and train it.

The blocks are plain nn.Modules that map B x C x h x w to B x 256 x h x w, so they drop into
other libraries' models. (The reconstruction pair needs `context(x, return_reconstruction=True)`;
smp calls the block plainly, so this example trains with cross-entropy only.)

    python examples/context_in_smp.py --steps 5
"""
import argparse

import segmentation_models_pytorch as smp
import torch

from mfnet_zoo import FactorizationContext
from mfnet_zoo.data import SyntheticShapes, train_transforms


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = smp.DeepLabV3Plus("resnet18", encoder_weights=None, encoder_output_stride=16, classes=6)
    aspp = model.decoder.aspp[0]
    in_channels = aspp.convs[0][0].in_channels
    grid = args.size // 16
    model.decoder.aspp[0] = FactorizationContext(in_channels, 256, rank=16, base_size=(grid, grid))
    print(f"replaced smp ASPP ({sum(p.numel() for p in aspp.parameters()):,} params) by FactorizationContext "
          f"({sum(p.numel() for p in model.decoder.aspp[0].parameters()):,} params)")

    data = SyntheticShapes(64, args.size, seed=0, transforms=train_transforms(args.size, None, True))
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    while len(losses) < args.steps:
        for images, masks in loader:
            loss = torch.nn.functional.cross_entropy(model(images), masks, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == args.steps:
                break
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    return losses


if __name__ == "__main__":
    main()
