"""save_pretrained -> push_to_hub -> from_pretrained, with a model card.

Without `--repo-id` (or without network) nothing is uploaded: the folder that push_to_hub would
upload is written locally instead and loaded back, which is what a user does to check a model
before publishing it.

    python examples/publish_weights.py --out my-mfnet                      # local dry run
    python examples/publish_weights.py --out my-mfnet --repo-id me/my-mfnet  # uploads (needs HF_TOKEN)

For a model trained with `mfnet-zoo train`, the run already holds such a folder (`OUT/model/`,
its card stating the run's metrics): `mfnet-zoo push OUT me/my-mfnet` publishes it.
"""
import argparse
from pathlib import Path

import torch

import mfnet_zoo
from mfnet_zoo.data import SYNTHETIC_CLASSES


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="my-mfnet")
    parser.add_argument("--repo-id", help="Hub repo to push to; omit for a local dry run")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)

    model = mfnet_zoo.create_model("mfnet", encoder="test_resnet", num_classes=6).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(label_names=SYNTHETIC_CLASSES)
    card = {"metrics": {"mIoU": 0.0}, "dataset": "mfnet_zoo synthetic shapes"}  # put your measured metrics here
    model.save_pretrained(args.out, model_card_kwargs=card)
    print(f"wrote {sorted(p.name for p in Path(args.out).iterdir())} to {args.out}/")
    if args.repo_id:
        url = model.push_to_hub(args.repo_id, private=args.private, commit_message="Upload mfnet_zoo weights",
                                model_card_kwargs=card)
        print(f"pushed: {url}")
    source = args.repo_id or args.out
    restored = mfnet_zoo.from_pretrained(source).eval()
    x = torch.randn(1, 3, 64, 64)
    same = torch.equal(restored(x).logits, model(x).logits)
    print(f"from_pretrained({source!r}): identical logits {same}; labels {restored.pretrained_cfg.label_names}")
    return Path(args.out)


if __name__ == "__main__":
    main()
