"""One segmentation model for every architecture: encoder -> context -> decoder -> upsample."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from timm.utils import reparameterize_model
from torch import nn

from .. import hub
from .._builder import load_saved_model, model_config
from .._checks import is_tracing
from ..card import model_card_for
from .._pretrained import PretrainedCfg
from .._sources import parse_model_source
from ..layers.context_protocol import Reconstruction, get_context_state, provides_reconstruction
from .encoder import TimmEncoder

__all__ = ["SegmentationModel", "SegmentationOutput", "is_binary"]


def is_binary(num_classes: int) -> bool:
    """Whether a model with ``num_classes`` outputs segments one class against the rest: one channel is
    binary (sigmoid, BCE; a pixel is the class where its logit > 0), more are multiclass (softmax, argmax).
    The one place this rule is decided: the loss, the engine, inference and ``predict`` ask here."""
    return num_classes == 1


@dataclass
class SegmentationOutput:
    """What a :class:`SegmentationModel` returns.

    logits: B x num_classes x H x W, at the input resolution.
    features: B x C x h x w, the context block's output at the encoder's output stride.
    reconstruction: the context's (target, estimate) pair for the reconstruction loss, or
        None when the context has none (ASPP, EM attention, a disabled factorization).
    """

    logits: torch.Tensor
    features: torch.Tensor
    reconstruction: Reconstruction | None = None


torch.export.register_dataclass(SegmentationOutput, serialized_type_name="mfnet_zoo.SegmentationOutput")


class SegmentationModel(nn.Module, PyTorchModelHubMixin, library_name="mfnet_zoo",
                        tags=["image-segmentation", "mfnet_zoo"]):
    """Encoder -> context -> decoder (with its classifier) -> bilinear upsampling to the input.

    Args:
        encoder: a :class:`TimmEncoder`: its skips (by default the stride-4 features; see
            :meth:`TimmEncoder.use_skips`), then the deepest features.
        context: any module mapping B x encoder.out_channels x h x w to B x C x h x w; a block that
            follows the context protocol (:mod:`mfnet_zoo.layers.context_protocol`) is called with
            ``return_reconstruction=True`` and returns ``(features, Reconstruction | None)``.
        decoder: ``decoder(*skips, features)`` -> B x num_classes x h' x w' logits (``decoder(low_level,
            features)`` with the default skip), with a
            ``classifier`` attribute (see :mod:`mfnet_zoo.layers.decoder`).

    forward(x: B x in_chans x H x W, float) -> :class:`SegmentationOutput`. Any H, W >= the
    output stride works, multiples of 32 or not.

    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from huggingface_hub's
    ``PyTorchModelHubMixin``: ``model.safetensors`` + ``config.json`` (registry name and
    constructor arguments, see :func:`mfnet_zoo._builder.model_config`) + a model card.
    """

    def __init__(self, encoder: TimmEncoder, context: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.context = context
        self.decoder = decoder
        # the encoder's mean/std/interpolation (a TimmEncoder's data_config); the registry's builder sets the rest
        self.pretrained_cfg = PretrainedCfg().with_data_defaults(getattr(encoder, "data_config", {}))
        self.model_name: str | None = None  # set by the registry's builder
        self.model_args = {}
        self.reparameterized = False  # folded for inference (recorded in config.json)

    @property
    def num_classes(self) -> int:
        return self.decoder.num_classes

    @property
    def in_chans(self) -> int:
        return self.encoder.in_chans

    @property
    def output_stride(self) -> int:
        return self.encoder.output_stride

    def get_classifier(self) -> nn.Conv2d:
        return self.decoder.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Re-head the model for ``num_classes`` classes (new, randomly initialised 1x1 conv)."""
        self.decoder.reset_classifier(num_classes)

    def reparameterize(self) -> SegmentationModel:
        """Fold what can be folded for inference, in place: ``eval()``, then timm's own walker
        (``timm.utils.reparameterize_model``), which replaces every submodule that has ``fuse()`` by
        its result (the static factorization context) and folds timm encoders that fold (RepVGG,
        MobileOne). Outputs stay the same up to float rounding; the folded context has no
        reconstruction pair, so training afterwards is not supported. ``save_pretrained`` records it in
        config.json and ``from_pretrained`` rebuilds the folded model. Returns ``self``.
        """
        self.eval()
        reparameterize_model(self, inplace=True)
        self.reparameterized = True
        return self

    def no_weight_decay(self) -> set[str]:
        """Full names of the parameters its blocks exclude from weight decay (timm's convention, so that
        ``timm.optim.create_optimizer_v2(model, ...)`` and the training engine honour them)."""
        names: set[str] = set()
        for prefix, module in self.named_modules():
            if module is not self and hasattr(module, "no_weight_decay"):
                names |= {f"{prefix}.{name}" for name in module.no_weight_decay()}
        return names

    @property
    def model_args(self) -> dict[str, Any]:
        """Every constructor argument (config.json); ``context_state`` as the context is now, so a model
        saved during the warm-up reloads in the state it was saved in."""
        args = dict(self._model_args)
        if "context_state" in args and get_context_state(self.context) is not None:
            args["context_state"] = get_context_state(self.context)
        return args

    @model_args.setter
    def model_args(self, value: dict[str, Any]) -> None:
        self._model_args = dict(value)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute encoder activations in backward to save memory (timm's mechanism)."""
        self.encoder.set_grad_checkpointing(enable)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise TypeError/ValueError for inputs the model cannot take, naming what is allowed."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor of shape B x {self.in_chans} x H x W, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"expected a 4-d input B x {self.in_chans} x H x W, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point (normalised) image tensor, got dtype {x.dtype}; "
                            f"convert uint8 images with x.float() / 255 and normalise them")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        if min(x.shape[-2:]) < self.output_stride:
            raise ValueError(f"input {x.shape[-2]} x {x.shape[-1]} is smaller than the output stride "
                             f"{self.output_stride}; height and width must be >= {self.output_stride}")

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        if not is_tracing():  # as smp: shape checks would break or slow tracing and export
            self.check_input(x)
        *skips, deep = self.encoder(x)
        if provides_reconstruction(self.context):
            features, reconstruction = self.context(deep, return_reconstruction=True)
        else:
            features, reconstruction = self.context(deep), None
        logits = self.decoder(*skips, features)
        # align_corners=True as the paper's code, for weight compatibility
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return SegmentationOutput(logits, features, reconstruction)

    # -- Hugging Face Hub (PyTorchModelHubMixin) ------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None, **kwargs: Any):
        """Write model.safetensors, config.json and README.md (model card) to ``save_directory``."""
        self._require_registered()
        return super().save_pretrained(save_directory, config=config or model_config(self), **kwargs)

    def push_to_hub(self, repo_id: str, *, config: dict | None = None, model_card_kwargs: dict | None = None,
                    **kwargs: Any):
        """Upload weights, config and model card to ``repo_id`` (``private=``, ``commit_message=``, ...)."""
        self._require_registered()
        card = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, config=config or model_config(self), model_card_kwargs=card, **kwargs)

    def _require_registered(self) -> None:
        if not self.model_name:
            raise ValueError("save_pretrained/push_to_hub need a model built by create_model (its name and "
                             "arguments go into config.json); for a hand-assembled model save state_dict() "
                             "with mfnet_zoo.hub.write_safetensors")

    def _save_pretrained(self, save_directory: Path) -> None:
        hub.write_safetensors(self.state_dict(), Path(save_directory) / hub.WEIGHTS_NAME,
                              metadata={"architecture": self.model_name})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None, map_location: str = "cpu",
                        strict: bool = False, **model_kwargs: Any) -> SegmentationModel:
        """A saved model: a Hub repo id (``"org/repo"`` or ``"hf-hub:org/repo[@rev]"``), a ``save_pretrained``
        folder, a ``.safetensors`` file with config.json beside it, a training checkpoint or run folder.

        ``model_kwargs`` apply on top of the saved arguments (``num_classes=5``: a new head, the rest
        loaded). The same loading code as :func:`mfnet_zoo.load_model`, which also takes registry names.
        """
        hub_kwargs = dict(force_download=force_download, token=token, cache_dir=cache_dir,
                          local_files_only=local_files_only, revision=revision)
        source = parse_model_source(pretrained_model_name_or_path)
        if source.kind in ("name", "tag"):
            raise ValueError(f"from_pretrained loads saved weights; {source.describe()} names a registered model: "
                             f"use mfnet_zoo.create_model({source.text!r}) or mfnet_zoo.load_model({source.text!r})")
        model = load_saved_model(source, strict=strict, hub_kwargs={k: v for k, v in hub_kwargs.items() if v},
                                 **model_kwargs)
        return model.to(map_location)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """Model card (``repo_id``, ``metrics``, ``dataset``, ``license`` may be given; by default the
        pretrained config's): :func:`mfnet_zoo.card.model_card_for`."""
        return model_card_for(self, **kwargs)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class map B x H x W (int64) in eval mode; one channel means binary (logit > 0)."""
        self.eval()
        logits = self(x).logits
        return (logits[:, 0] > 0).long() if is_binary(logits.shape[1]) else logits.argmax(dim=1)
