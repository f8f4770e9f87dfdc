"""The training engine: param groups of both recipes, warm-up, learning, determinism, checkpoints, CLI."""
import json

import pytest
import torch
from torch.utils.data import DataLoader

from mfnet_zoo import create_model
from mfnet_zoo.cli import main
from mfnet_zoo.data import CONTEXT_CLASSES, SyntheticShapes, eval_transforms, train_transforms
from mfnet_zoo.losses import SegmentationLoss
from mfnet_zoo.train import (PRESETS, TrainConfig, Trainer, build_optimizer, build_param_groups, evaluate,
                             load_checkpoint, seed_everything, train_one_epoch)


def tiny_model(name="mfnet", **kwargs):
    return create_model(name, encoder="test_resnet", num_classes=6, decoder_channels=32, **kwargs) \
        if name != "emanet" else create_model(name, encoder="test_resnet", num_classes=6, **kwargs)


def loaders(n=16, size=32, batch=4, seed=0):
    g = seed_everything(seed)
    train = SyntheticShapes(n, size, seed=0, transforms=train_transforms(size, None, True))
    val = SyntheticShapes(8, size, seed=1, transforms=eval_transforms())
    return DataLoader(train, batch_size=batch, shuffle=True, generator=g), DataLoader(val, batch_size=4)


def ids(groups):
    return [{id(p) for p in g["params"]} for g in groups]


def test_default_groups_train_everything_with_head_at_10x_and_no_decay_on_norms():
    model = tiny_model(base_size=(2, 2))
    groups = build_param_groups(model, PRESETS["default"])
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    lr = PRESETS["default"].lr
    head = [g for g in groups if g["lr"] == pytest.approx(10 * lr)]
    assert {id(model.context.Y), id(model.context.embed.weight)} <= set().union(*ids(head))
    no_decay = set().union(*ids([g for g in groups if g["weight_decay"] == 0]))
    assert id(model.context.Y) in no_decay and id(model.context.proj[1].weight) in no_decay
    assert id(model.context.embed.weight) not in no_decay


def test_paper_groups_leave_the_factorization_convs_out():
    model = tiny_model(base_size=(2, 2))
    groups = build_param_groups(model, PRESETS["paper"])
    grouped = set().union(*ids(groups))
    left_out = {n for n, p in model.named_parameters() if id(p) not in grouped}
    assert left_out == {"context.embed.weight", "context.embed.bias", "context.proj.0.weight",
                        "context.proj.1.weight", "context.proj.1.bias"}
    base = [g for g in groups if g["lr"] == PRESETS["paper"].lr][0]
    assert {id(model.context.Y), id(model.context.Z)} <= {id(p) for p in base["params"]}
    assert all(g["weight_decay"] == 5e-4 for g in groups)
    # for a non-factorization context the paper's code puts the context with the decoder, at 10x
    aspp = tiny_model("deeplabv3plus")
    assert {id(p) for g in build_param_groups(aspp, PRESETS["paper"]) for p in g["params"]} == \
        {id(p) for p in aspp.parameters()}


def test_paper_text_groups_train_everything_and_emanet_groups_are_by_kind():
    model = tiny_model(base_size=(2, 2))
    cfg = PRESETS["paper-text"]
    groups = build_param_groups(model, cfg)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    lr_of = {id(p): g["lr"] / cfg.lr for g in groups for p in g["params"]}
    assert lr_of[id(model.context.Y)] == 1.0 and lr_of[id(model.context.embed.weight)] == pytest.approx(10.0)
    # EMANet as the paper's code runs it: conv weights 1x with decay, norm weights and biases 10x without
    ema = tiny_model("emanet")
    for group in build_param_groups(ema, PRESETS["paper"]):
        mult = group["lr"] / PRESETS["paper"].lr
        assert (mult, group["weight_decay"]) in ((1.0, 5e-4), (pytest.approx(10.0), 0.0))
    groups = build_param_groups(ema, PRESETS["paper"])
    lr_of = {id(p): (g["lr"] / PRESETS["paper"].lr, g["weight_decay"]) for g in groups for p in g["params"]}
    assert lr_of[id(ema.encoder.model.bn1.weight)] == (pytest.approx(10.0), 0.0)
    assert lr_of[id(ema.encoder.model.layer1[0].conv1.weight)] == (1.0, 5e-4)


def test_presets_describe_their_transforms_and_check_their_fields():
    from torchvision.transforms import v2

    from mfnet_zoo.data import FixScaleCrop, RandomGaussianBlur, RandomScale, RandomScaleCrop

    def steps(transform):
        return [type(t) for t in transform.transforms]

    assert RandomScaleCrop in steps(PRESETS["paper"].train_transforms())
    assert RandomGaussianBlur in steps(PRESETS["paper"].train_transforms())
    assert steps(PRESETS["paper-text"].train_transforms())[1] is FixScaleCrop  # no augmentation
    assert RandomScale in steps(PRESETS["default"].train_transforms())
    assert FixScaleCrop in steps(PRESETS["paper"].eval_transforms())
    assert steps(PRESETS["default"].eval_transforms()) == [v2.ToImage, v2.ToDtype, v2.Normalize]
    assert PRESETS["paper"].context_state == "pair-only" and PRESETS["paper-text"].context_state == "on"
    with pytest.raises(ValueError, match=r"augmentation must be one of \('deeplab', 'paper', 'none'\), got 'flip'"):
        TrainConfig(augmentation="flip")
    with pytest.raises(ValueError, match=r"context_state must be one of \('on', 'off', 'pair-only'\)"):
        PRESETS["paper"].replace(context_state="half")
    with pytest.raises(ValueError, match="eval_protocol must be one of"):
        TrainConfig(eval_protocol="crop")
    with pytest.raises(ValueError, match="grad_accum_steps must be a positive int, got 0"):
        TrainConfig(grad_accum_steps=0)


def test_config_replace_rejects_unknown_fields():
    with pytest.raises(TypeError, match=r"unknown TrainConfig field\(s\) \['epoch'\]"):
        TrainConfig().replace(epoch=3)
    with pytest.raises(ValueError, match="optimizer must be"):
        build_optimizer(tiny_model(base_size=(2, 2)), TrainConfig(optimizer="lamb"))


def test_training_lowers_the_loss_and_evaluate_returns_metrics():
    train, val = loaders(n=16, size=32)
    model = tiny_model(base_size=(2, 2))
    cfg = TrainConfig(epochs=1, optimizer="adamw", lr=3e-3, param_rules=())
    optimizer, loss = build_optimizer(model, cfg), SegmentationLoss()
    first = train_one_epoch(model, train, loss, optimizer, progress=False)
    for _ in range(6):
        last = train_one_epoch(model, train, loss, optimizer, progress=False)
    assert last["loss"] < 0.7 * first["loss"]
    assert {"loss", "ce", "reconstruction", "lr", "it_per_s"} <= set(last)
    metrics = evaluate(model, val, 6, progress=False)
    assert 0 <= metrics["mIoU"] <= 1 and len(metrics["per_class_iou"]) == 6


def test_same_seed_same_weights():
    def run():
        train, _ = loaders(n=8, size=32, seed=3)
        torch.manual_seed(3)
        model = tiny_model(base_size=(2, 2))
        optimizer = build_optimizer(model, TrainConfig(lr=0.01))
        train_one_epoch(model, train, SegmentationLoss(), optimizer, progress=False)
        return model.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_grad_accumulation_matches_a_larger_batch():
    torch.manual_seed(0)
    model = tiny_model("emanet").eval()  # eval: BN and dropout do not depend on the batch split
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 6, (4, 32, 32))
    clone = create_model("emanet", encoder="test_resnet", num_classes=6).eval()
    clone.load_state_dict(model.state_dict())
    cfg = TrainConfig(lr=0.1, momentum=0.0, weight_decay=0.0)
    for m, batches, accum in ((model, [(x, y)], 1), (clone, [(x[:2], y[:2]), (x[2:], y[2:])], 2)):
        opt = build_optimizer(m, cfg)
        m.train = lambda mode=True, m=m: m  # keep eval mode inside train_one_epoch
        train_one_epoch(m, batches, SegmentationLoss(), opt, grad_accum_steps=accum, progress=False)
    for (n, p), q in zip(model.named_parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=n)


def test_batch_average_with_accumulation_is_one_full_batch_step():
    # the paper's loss (CE and MSE divided by the batch) on 4 images at once, and as 2 x 2 accumulated: the same
    # update when the divisor is the global batch (float64, BN in eval mode, dropout off, no void pixels)
    torch.manual_seed(0)
    model = tiny_model(base_size=(1, 1), context_state="pair-only").double().eval()
    clone = tiny_model(base_size=(1, 1), context_state="pair-only").double().eval()
    clone.load_state_dict(model.state_dict())
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 6, (4, 32, 32))
    cfg = PRESETS["paper"].replace(lr=0.5)  # its groups, momentum and weight decay
    start = model.decoder.classifier.weight.detach().clone()
    loss = SegmentationLoss(batch_average=True)
    for m, batches, accum in ((model, [(x, y)], 1), (clone, [(x[:2], y[:2]), (x[2:], y[2:])], 2)):
        m.train = lambda mode=True, m=m: m  # keep eval mode inside train_one_epoch
        terms = train_one_epoch(m, batches, loss, build_optimizer(m, cfg), grad_accum_steps=accum, progress=False)
        assert "reconstruction" in terms
    for (n, p), q in zip(model.named_parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, msg=n)
    assert not torch.equal(model.decoder.classifier.weight, start)  # an update happened at all


def test_batch_average_divides_by_micro_batch_times_accumulation_times_processes(monkeypatch):
    import mfnet_zoo.train as engine

    seen = []

    class Spy(SegmentationLoss):
        def components(self, output, target, *, batch_size=None):
            seen.append(batch_size)
            return super().components(output, target, batch_size=batch_size)

    monkeypatch.setattr(engine, "world_size", lambda: 3)  # as under torchrun with 3 processes
    model = tiny_model("emanet")
    batches = [(torch.randn(2, 3, 32, 32), torch.randint(0, 6, (2, 32, 32)))] * 2
    train_one_epoch(model, batches, Spy(batch_average=True), build_optimizer(model, TrainConfig()),
                    grad_accum_steps=2, progress=False)
    assert seen == [2 * 2 * 3] * 2


def test_trainer_applies_the_presets_context_state_after_the_warm_up(tmp_path):
    train, _ = loaders(n=8, size=32, batch=8)
    model = tiny_model(base_size=(2, 2))  # built "on"
    cfg = TrainConfig(epochs=2, context_warmup_epochs=1, context_state="pair-only", optimizer="adamw", lr=1e-3,
                      param_rules=())
    history = Trainer(model, train, None, cfg, tmp_path, progress=False).fit()
    assert "reconstruction" not in history[0]["train"] and "reconstruction" in history[1]["train"]
    assert model.context.context_state == "pair-only"
    restored, _ = load_checkpoint(tmp_path / "last.pt")  # saved as it ran: logits without the context
    assert restored.context.context_state == "pair-only"
    # (a block without the switch ignores the preset's state: tests/test_reproduce.py trains EMANet under "paper")


def test_trainer_owns_warm_up_writes_logs_and_checkpoints(tmp_path):
    train, val = loaders(n=8, size=32)
    model = tiny_model(base_size=(2, 2))
    cfg = TrainConfig(epochs=2, context_warmup_epochs=1, optimizer="adamw", lr=1e-3, param_rules=())
    history = Trainer(model, train, val, cfg, tmp_path, progress=False).fit()
    assert "reconstruction" not in history[0]["train"] and "reconstruction" in history[1]["train"]
    assert model.context.context_state == "on"
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and "mIoU" in lines[1]["val"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary files left behind
    restored, checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["model_name"] == "mfnet"
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(restored.eval()(x).logits, model.eval()(x).logits)
    assert history[-1]["train"]["lr"] == pytest.approx(0.0)  # poly decay reaches zero at the end


def test_load_checkpoint_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot read checkpoint .*bad.pt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not an mfnet_zoo training checkpoint"):
        load_checkpoint(foreign)


def test_amp_fp16_needs_cuda():
    from mfnet_zoo.inference import autocast

    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        autocast(torch.device("cpu"), "fp16")


def test_cli_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mfnet", "--encoder", "test_resnet", "--encoder-weights", "none", "--data", "synthetic",
                 "--synthetic-size", "16", "--image-size", "32", "--crop-size", "32", "--epochs", "1", "--batch-size",
                 "4", "--out", str(out), "--no-progress"]) == 0
    assert "| **mIoU** |" in capsys.readouterr().out
    assert main(["eval", str(out / "last.pt"), "--data", "synthetic", "--synthetic-size", "16", "--image-size",
                 "32", "--json", "--no-progress"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["mIoU"] <= 1
    # the paper code's protocol: FixScaleCrop centre crops (here 24 of the 32-px scenes), another figure
    assert main(["eval", str(out / "last.pt"), "--data", "synthetic", "--synthetic-size", "16", "--image-size",
                 "32", "--json", "--no-progress", "--protocol", "paper", "--crop-size", "24"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["mIoU"] <= 1
    assert main(["train", "mfnet", "--data", "voc", "--no-progress"]) == 2
    assert "--data voc needs --data-root" in capsys.readouterr().err


def test_cli_trains_any_context_on_the_context_scenes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "context_deeplab", "--context", "pool", "--encoder", "test_resnet", "--encoder-weights",
                 "none", "--data", "synthetic-global", "--synthetic-size", "8", "--image-size", "48", "--crop-size",
                 "48", "--epochs", "1", "--batch-size", "4", "--out", str(out), "--no-progress"]) == 0
    assert "| circle-v |" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["model_args"]["context"] == "pool" and run["data"]["image_size"] == 48
    assert run["data"]["classes"] == list(CONTEXT_CLASSES)


def test_cli_train_and_eval_normalise_as_the_model_says(tmp_path, monkeypatch, capsys):
    from mfnet_zoo.data import transforms

    seen = []
    for name in ("train_transforms", "eval_transforms"):  # record what the CLI's presets build pipelines with
        original = getattr(transforms, name)
        monkeypatch.setattr(transforms, name, lambda *a, _f=original, _n=name, **k: seen.append((_n, k)) or _f(*a, **k))
    out = tmp_path / "run"
    common = ["--data", "synthetic", "--synthetic-size", "8", "--image-size", "32", "--no-progress"]
    train = ["train", "mfnet", "--encoder", "test_resnet", "--encoder-weights", "none", "--crop-size", "32",
             "--epochs", "1", "--batch-size", "4", "--out", str(out), *common]
    assert main(train + ["--mean", "0.1,0.2,0.3", "--std", "0.4,0.5,0.6"]) == 0  # a user-given mean/std wins
    given = {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}
    assert seen == [("train_transforms", {**given, "ignore_index": 255, "interpolation": "bilinear"}),
                    ("eval_transforms", given)]
    seen.clear()
    assert main(["eval", str(out), *common, "--json"]) == 0  # the run folder's checkpoint keeps them
    assert seen == [("eval_transforms", given)]
    model, _ = load_checkpoint(out / "last.pt")
    assert model.pretrained_cfg.mean == (0.1, 0.2, 0.3) and model.pretrained_cfg.interpolation == "bilinear"
    capsys.readouterr()
    assert main(train + ["--std", "0.4,0,0.6"]) == 2
    assert "std takes 3 numbers > 0 (one per RGB channel), got 0.4,0.0,0.6" in capsys.readouterr().err


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "mfnet", "--encoder", "test_resnet", "--encoder-weights", "none", "--data", "synthetic",
            "--synthetic-size", "8", "--image-size", "32", "--crop-size", "32", "--batch-size", "4", "--out", str(out),
            "--no-progress"]
    assert main(base + ["--epochs", "1"]) == 0
    good = (out / "last.pt").read_bytes()
    assert main(base + ["--epochs", "1", "--lr", "1e30"]) == 2
    assert "non-finite training loss" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == good


def test_unwritable_output_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    train, val = loaders(n=8, size=32)
    trainer = Trainer(tiny_model(base_size=(2, 2)), train, val, TrainConfig(epochs=1), blocker / "out", progress=False)
    with pytest.raises(OSError, match="cannot write to the output folder"):
        trainer.fit()
