"""Your own training loop and optimizer around an mfnet_zoo model and SegmentationLoss.

Shows: create_model, the SegmentationOutput (logits + reconstruction pair), SegmentationLoss
(CE + 0.1 * MSE), owning the paper's warm-up yourself (context off for the first epochs), and
SegmentationMetrics for evaluation. Runs on the built-in synthetic scenes, on the CPU.

    python examples/embed_in_training_loop.py --epochs 4
"""
import argparse

import torch
from torch.utils.data import DataLoader

from mfnet_zoo import SegmentationLoss, create_model, resolve_data_config
from mfnet_zoo.layers import get_context_state, set_context_state
from mfnet_zoo.data import SyntheticShapes, eval_transforms, train_transforms
from mfnet_zoo.metrics import SegmentationMetrics


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--warmup-epochs", type=int, default=1, help="epochs with the context switched off")
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = create_model("mfnet", encoder="test_resnet", num_classes=6, output_stride=8,
                         base_size=(args.size // 8, args.size // 8), decoder_channels=64)
    data_cfg = resolve_data_config(model)
    train = SyntheticShapes(args.train_size, args.size, seed=0,
                            transforms=train_transforms(args.size, None, True, data_cfg["mean"], data_cfg["std"]))
    val = SyntheticShapes(64, args.size, seed=1, transforms=eval_transforms(data_cfg["mean"], data_cfg["std"]))
    loader = DataLoader(train, batch_size=8, shuffle=True, drop_last=True)
    criterion = SegmentationLoss(reconstruction_weight=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=args.epochs * len(loader), power=0.9)

    for epoch in range(args.epochs):
        # you own the warm-up (the context protocol's switch); the loss has no epoch logic
        set_context_state(model.context, "on" if epoch >= args.warmup_epochs else "off")
        model.train()
        for images, masks in loader:
            output = model(images)  # .logits B x 6 x H x W, .reconstruction (target, estimate) or None
            loss = criterion(output, masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, context {get_context_state(model.context)}")

    metrics = SegmentationMetrics(num_classes=6)
    model.eval()
    with torch.no_grad():
        for images, masks in DataLoader(val, batch_size=16):
            metrics.update(model(images).logits, masks)
    miou = metrics.compute()["mIoU"]
    print(f"held-out mIoU {miou:.3f}")
    return miou


if __name__ == "__main__":
    main()
