"""FactorizationContext between a non-ResNet timm encoder and the DeepLabV3+ decoder, by hand.

Shows the blocks as plain modules: TimmEncoder (any timm features_only model; here a ConvNeXt,
which has no stride-2 level, so levels are picked by reduction), FactorizationContext and
DeepLabV3PlusDecoder inside the one SegmentationModel. `create_model("mfnet", encoder=...)`
builds the same thing in one line.

    python examples/custom_encoder.py --encoder convnext_atto --size 96
"""
import argparse

import torch

from mfnet_zoo import DeepLabV3PlusDecoder, FactorizationContext, SegmentationModel, TimmEncoder


def main(argv=None) -> torch.Size:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="convnext_atto", help="any timm model that can dilate")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--mode", choices=("static", "nmf"), default="nmf",
                        help="nmf adapts to each image; static learns one Y Z for the dataset")
    args = parser.parse_args(argv)

    encoder = TimmEncoder(args.encoder, output_stride=16)  # encoder_weights: TimmEncoder(..., pretrained=True)
    grid = -(-args.size // 16)
    context = FactorizationContext(encoder.out_channels, 256, rank=32, mode=args.mode, base_size=(grid, grid))
    decoder = DeepLabV3PlusDecoder(encoder.low_level_channels, num_classes=5)
    model = SegmentationModel(encoder, context, decoder).eval()
    out = model(torch.randn(2, 3, args.size, args.size))
    print(f"{args.encoder}: stride-4 features {encoder.low_level_channels} ch, deepest {encoder.out_channels} ch")
    print(f"logits {tuple(out.logits.shape)}, context {tuple(out.features.shape)}, "
          f"reconstruction {tuple(out.reconstruction.estimate.shape)}")
    return out.logits.shape


if __name__ == "__main__":
    main()
