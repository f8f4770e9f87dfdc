"""Global context by low-rank matrix factorization (MFNet).

The deepest feature map X (C x N, N = h * w) is approximated by a rank-K product
X' = Y Z and the context output is ``proj(relu(X') + embed(X))``. Two ways to get
Y and Z:

* ``mode="static"`` (the paper): Y (C x K) and Z (K x h0 * w0) are parameters learned
  over the whole dataset, on a fixed base grid (33 x 33 = a 513 input at stride 16).
  relu(Y Z) is resized to the feature size *after* the relu, so at the base grid the
  paper's code is matched exactly and at inference the whole branch is a constant map.
* ``mode="nmf"`` (input-adaptive, after Hamburger, Geng et al. ICLR 2021): Y and Z are
  found per image by multiplicative-update NMF of the non-negative embedding, starting
  from fixed bases; by default only the last update carries gradient (one-step gradient,
  ``bases_grad``: see below).

How ``mode="nmf"`` differs from Hamburger's ``NMF2D`` (github:Gsunshine/Enjoy-Hamburger, ``seg/``), and
the arguments that choose each side (``NMF_SETTINGS["hamburger"]`` sets all of them as its segmentation
configuration, ``seg/HamNet/settings.py``, does):

* **Initial bases.** Here a buffer drawn once from ``seed``, so eval and export are deterministic;
  Hamburger redraws them (uniform, l2-normalised) on every forward, in eval too (``RAND_INIT = True``).
  ``redraw_bases=True`` redraws them in training (from torch's global RNG, as dropout); eval always
  starts from the buffer.
* **Inverse temperature** of the softmax that initialises the coefficients. Each image is factorized
  at unit scale (divided by its maximum, so fp16-range features neither overflow nor vanish; the
  multiplicative updates do not depend on the scale); with ``inv_t=None`` the softmax sees that
  unit-scale input, an effective inverse temperature of 1 / max(x) on the features themselves.
  ``inv_t=t`` applies t to the features as they are: Hamburger's NMF2D fixes t = 1.
* **Steps.** 6 in training, 7 in eval here (NMF2D's defaults); Hamburger's segmentation configuration
  uses 6 and 6. Gradient: one step (its last coefficient update), as Hamburger (``bases_grad="one-step"``).
* **Place in the model.** Hamburger squeezes 2048 -> 512 channels (``width`` here), factorizes, and
  maps back to 2048 followed by its own head; here the estimate is added to the non-negative
  embedding and projected to ``out_channels`` for the decoder, as the static mode.

What the gradient sees (``bases_grad``, nmf mode only; the forward outputs are the same in all three,
only autograd differs):

* ``"none"``: nothing of the factorization is differentiable: bases and coefficients are computed
  without gradient and the estimate is a constant. The embedding still trains through the
  ``estimate + target`` sum and the reconstruction pair's target.
* ``"one-step"`` (the default; Hamburger/HamNet): the multiplicative updates run without gradient and
  only the last coefficient update is differentiable, in the features at the same position, with the
  bases held constant. Geng et al. (ICLR 2021) found back-propagation through the whole iteration
  unstable, and this one-step gradient is what HamNet trains with.
* ``"unrolled"``: back-propagation through every update (softmax initialisation, all coefficient and
  bases updates), so the bases depend differentiably on every position.

The property that separates them: in ``"none"`` and ``"one-step"`` the gradient of an output cell with
respect to the block's input at any *other* position is exactly zero (with BatchNorm in eval mode), and
that is how the published designs train: the global context reaches each position in the forward pass,
but no position's loss sends gradient to features elsewhere. With ``"unrolled"`` a distant position
reaches the cell through the bases (and the per-image scale, the maximum of the features: unrolled is
the exact gradient of the forward). In float32 and under bf16 autocast the unrolled gradient stays finite
on zero, one-spike, tiny (1e-8) and huge (1e4) inputs, with its norm within 10x of the one-step gradient's
there (``tests/test_bases_grad.py``).

What the context study (docs/context-study.md, v2) found: neither gradient made NMF read a cue beyond the
receptive field, one-step (``"nmf"``) and unrolled (``"nmf-unrolled"``) 0 of 8 seeds each, Hamburger's
settings 0 of 3, the static mode 0 of 3 (it cannot: relu(Y Z) is the same for every image); image pooling
read it in 1 of 8, no context reliably.
"""
from __future__ import annotations

import contextlib
import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from .._checks import check_feature_map, check_positive_int
from .context_protocol import ContextState, Reconstruction, check_context_state

__all__ = ["BASES_GRAD", "NMF_SETTINGS", "BasesGrad", "FactorizationContext", "FoldedFactorizationContext",
           "check_bases_grad"]

_MODES = ("static", "nmf")

# what the gradient sees of an iterative factorization (NMF here, EM in .ema); see the module docstring
BasesGrad = Literal["none", "one-step", "unrolled"]
BASES_GRAD: tuple[str, ...] = get_args(BasesGrad)


def check_bases_grad(value: object) -> str:
    """``value`` if it is one of :data:`BASES_GRAD`, else a ValueError naming it and the allowed values."""
    if not isinstance(value, str) or value not in BASES_GRAD:
        raise ValueError(f"bases_grad must be one of {BASES_GRAD}, got {value!r}")
    return value

# named NMF settings: FactorizationContext(..., mode="nmf", **NMF_SETTINGS[name]); the width (512) and rank (64)
# of Hamburger's configuration are the nmf mode's defaults
NMF_SETTINGS: dict[str, dict[str, object]] = {
    "mfnet_zoo": dict(train_steps=6, eval_steps=7, inv_t=None, redraw_bases=False),
    # Enjoy-Hamburger seg/HamNet/settings.py: TRAIN_STEPS 6, EVAL_STEPS 6, INV_T 1, RAND_INIT True
    "hamburger": dict(train_steps=6, eval_steps=6, inv_t=1.0, redraw_bases=True),
}


class FactorizationContext(nn.Module):
    """Low-rank factorization context block: B x in_channels x h x w -> B x out_channels x h x w.

    Args:
        in_channels: channels C of the encoder feature map.
        out_channels: channels after the 1x1 conv + BN + ReLU projection (256 in the paper).
        rank: K, the rank of the factorization (64 in the paper).
        mode: ``"static"`` (learned Y, Z; the paper) or ``"nmf"`` (per-image NMF).
        width: channels the factorization works at, after the 1x1 embedding conv. Default:
            ``in_channels`` for static (the paper), 512 for nmf (as Hamburger).
        base_size: (h0, w0) grid of the static Z; the paper's 33 x 33.
        train_steps: NMF iterations in training (NMF2D's default and Hamburger's seg config: 6).
        eval_steps: NMF iterations in eval (NMF2D's default: 7; Hamburger's seg config: 6, see NMF_SETTINGS).
        seed: seed of the NMF initial bases (a buffer, so eval and export are deterministic).
        inv_t: inverse temperature of the softmax that initialises the NMF coefficients, on the features
            as they are (Hamburger: 1); None: on the unit-scale features (see the module docstring).
        redraw_bases: draw new initial bases on every training forward, as Hamburger (eval keeps the buffer).
        bases_grad: what autograd sees of the NMF (nmf mode only; the outputs are the same for all three):
            ``"none"`` (nothing: the estimate is a constant), ``"one-step"`` (the default, Hamburger's: the
            last coefficient update only, position by position) or ``"unrolled"`` (every update, so the bases
            carry gradient between positions). See the module docstring. The static mode has no iterations
            and takes only the default.
        context_state: ``"on"`` (the context in the features, the pair returned), ``"off"`` (the
            factorization skipped: warm-up epochs) or ``"pair-only"`` (the pair computed, the features
            bypass the context: the paper's code as it ran). See :mod:`mfnet_zoo.layers.context_protocol`; the
            owner of the training schedule switches it, the block has no epoch logic.

    ``forward(x)`` returns the B x out_channels x h x w context; with
    ``return_reconstruction=True`` it returns ``(context, Reconstruction | None)``. Folding for
    inference follows timm's convention: ``fuse()`` returns the folded replacement
    (``timm.utils.reparameterize_model`` calls it).
    """

    provides_reconstruction = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rank: int = 64,
        mode: Literal["static", "nmf"] = "static",
        width: int | None = None,
        base_size: tuple[int, int] = (33, 33),
        train_steps: int = 6,
        eval_steps: int = 7,
        seed: int = 0,
        context_state: ContextState = "on",
        inv_t: float | None = None,
        redraw_bases: bool = False,
        bases_grad: BasesGrad = "one-step",
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        width = (in_channels if mode == "static" else 512) if width is None else width
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("rank", rank), ("width", width), ("train_steps", train_steps),
                            ("eval_steps", eval_steps)):
            check_positive_int(name, value)
        if len(base_size) != 2 or any(not isinstance(s, int) or s <= 0 for s in base_size):
            raise ValueError(f"base_size must be two positive ints (h0, w0), got {base_size!r}")
        if inv_t is not None and (isinstance(inv_t, bool) or not isinstance(inv_t, (int, float)) or not inv_t > 0):
            raise ValueError(f"inv_t must be a positive number or None (the unit-scale input), got {inv_t!r}")
        if not isinstance(redraw_bases, bool):
            raise TypeError(f"redraw_bases must be a bool, got {redraw_bases!r}")
        self.in_channels, self.out_channels, self.rank, self.width = in_channels, out_channels, rank, width
        self.mode = mode
        self.base_size = tuple(base_size)
        self.train_steps, self.eval_steps = train_steps, eval_steps
        self.context_state = check_context_state(context_state)
        self.inv_t = None if inv_t is None else float(inv_t)
        self.redraw_bases = redraw_bases
        self.bases_grad = bases_grad  # checked by the property

        # the paper's `conv1`: 1x1 with bias, the target of the reconstruction loss
        self.embed = nn.Conv2d(in_channels, width, 1, bias=True)
        if mode == "static":
            n = self.base_size[0] * self.base_size[1]
            # as the paper's code (its text says standard normal): uniform +- 1/sqrt(numel)
            self.Y = nn.Parameter(torch.empty(width, rank).uniform_(-1, 1) / math.sqrt(width * rank))
            self.Z = nn.Parameter(torch.empty(rank, n).uniform_(-1, 1) / math.sqrt(rank * n))
        else:
            # drawn on the CPU (the seeded generator's device), then moved where the model is being built
            # (a `with torch.device("meta" / "cuda")` block): the same bases everywhere
            generator = torch.Generator().manual_seed(seed)
            bases = F.normalize(torch.rand(width, rank, generator=generator, device="cpu"), dim=0)
            self.register_buffer("bases", bases.to(torch.get_default_device()))
        # the paper's `conv2` + ReLU
        self.proj = Conv2dNormActivation(width, out_channels, kernel_size=1)

    @property
    def bases_grad(self) -> str:
        """What autograd sees of the NMF: ``"none"``, ``"one-step"`` or ``"unrolled"`` (settable; checked)."""
        return self._bases_grad

    @bases_grad.setter
    def bases_grad(self, value: BasesGrad) -> None:
        check_bases_grad(value)
        if self.mode == "static" and value != "one-step":
            raise ValueError(f"bases_grad={value!r} needs mode='nmf': the static mode has no iterations to "
                             "differentiate (it takes only the default, 'one-step')")
        self._bases_grad = value

    def extra_repr(self) -> str:
        nmf = f", inv_t={self.inv_t}, redraw_bases={self.redraw_bases}, bases_grad={self.bases_grad!r}" \
            if self.mode == "nmf" else ""
        return f"mode={self.mode!r}, rank={self.rank}, width={self.width}, context_state={self.context_state!r}{nmf}"

    def no_weight_decay(self) -> set[str]:
        """Y and Z, the static factorization's learned bases and coefficients (timm's convention:
        ``timm.optim.create_optimizer_v2`` and the training engine leave them undecayed)."""
        return {"Y", "Z"} if self.mode == "static" else set()

    @torch.no_grad()
    def fuse(self) -> FoldedFactorizationContext | FactorizationContext:
        """The eval-mode static context folded into one 1x1 conv plus a constant map (timm's ``fuse()``).

        ``nmf`` mode depends on the image and the ``"off"``/``"pair-only"`` states have no context in
        the features: they return ``self`` unchanged. Folding in training mode is an error (BN would
        fold with its running statistics, not the batch's, and the outputs would change).

        relu(Y Z) does not depend on the image, and embed, the resize and the projection's conv
        and BN are linear, so ``relu(BN(W_p (resize(relu(Y Z)) + W_e x + b_e)))`` equals
        ``relu(W x + resize(C))`` with ``W = s W_p W_e`` and ``C = s (W_p (relu(Y Z) + b_e) - mu) + beta``
        on the base grid (``s = gamma / sqrt(var + eps)``). Bilinear resizing keeps constants, so
        resizing C after folding is exact. The fold is computed in float64 (float32 where the device
        has no float64) and the result has the device and dtype of the weights it replaces; on the
        meta device it gives shapes only.
        """
        if self.mode != "static" or self.context_state != "on":
            return self
        if self.training:
            raise RuntimeError("FactorizationContext.fuse() needs eval mode: call .eval() first (folding in "
                               "training mode would use BN's running statistics, not the batch's)")
        conv, bn = self.proj[0], self.proj[1]
        dtype, device = conv.weight.dtype, conv.weight.device
        exact = torch.float32 if device.type == "mps" else torch.float64

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(exact)

        scale = cast(bn.weight) / torch.sqrt(cast(bn.running_var) + bn.eps)  # out
        w_p = cast(conv.weight).flatten(1)  # out x width
        w_e, b_e = cast(self.embed.weight).flatten(1), cast(self.embed.bias)  # width x in, width
        weight = (scale[:, None] * (w_p @ w_e)).view(self.out_channels, self.in_channels, 1, 1)
        low_rank = (cast(self.Y) @ cast(self.Z)).view(1, self.width, *self.base_size)
        context = F.relu(low_rank) + b_e.view(1, -1, 1, 1)  # 1 x width x h0 x w0
        bias_map = torch.einsum("ow,bwhv->bohv", w_p, context)
        bias_map = scale.view(1, -1, 1, 1) * (bias_map - cast(bn.running_mean).view(1, -1, 1, 1)) \
            + cast(bn.bias).view(1, -1, 1, 1)
        return FoldedFactorizationContext(weight.to(dtype), bias_map.to(dtype))

    def unused_parameters(self, reconstruction: bool = True) -> set[str]:
        """The parameters the current state leaves out of the loss (the context protocol): with the
        factorization skipped ("off", or "pair-only" with no reconstruction loss), Y, Z, and the embedding
        when the projection takes the input itself (width == in_channels)."""
        if self.context_state == "on" or (self.context_state == "pair-only" and reconstruction):
            return set()
        skipped = {"Y", "Z"} if self.mode == "static" else set()
        return skipped | ({"embed.weight", "embed.bias"} if self.width == self.in_channels else set())

    def low_rank(self) -> torch.Tensor:
        """Static mode: Y Z on the base grid, 1 x width x h0 x w0."""
        return (self.Y @ self.Z).view(1, self.width, *self.base_size)

    def _nmf(self, v: torch.Tensor) -> torch.Tensor:
        """NMF of v (B x D x N, non-negative) with rank-K bases; returns bases @ coef^T, B x D x N.

        The same operations in the same order in every ``bases_grad`` mode (so the same values, bit for bit);
        the modes only choose which of them autograd records.
        """
        # float32 throughout: the multiplicative updates divide by small numbers, and fp16
        # products overflow at 2048 channels; each image is factorized at unit scale (its max),
        # so huge or tiny features neither overflow nor vanish
        no_autocast = torch.autocast(device_type=v.device.type, enabled=False) \
            if torch.amp.is_autocast_available(v.device.type) else contextlib.nullcontext()  # e.g. meta
        # "unrolled" records the iterations; "none" not even the last coefficient update
        iterations = contextlib.nullcontext() if self.bases_grad == "unrolled" else torch.no_grad()
        last_step = torch.no_grad() if self.bases_grad == "none" else contextlib.nullcontext()
        with no_autocast:
            # NMF2D's epsilon in the updates' denominators: they stay > 0 where a coefficient row or a base
            # has gone to zero (an all-zero position, a base no position uses), so 0 / 0 never happens; at
            # unit scale it is far below the products it guards (and bounds their backward gain by 1 / eps)
            eps = 1e-6
            # an all-zero image has max 0: divide by eps instead (its estimate is then exactly 0). A constant
            # for autograd except when unrolled: with inv_t=None the NMF is homogeneous of degree 1 in v, so
            # the scale's terms cancel; with inv_t set, the softmax sees the features as they are, and the
            # exact unrolled gradient includes the max's (one position's) share
            scale = (v if self.bases_grad == "unrolled" else v.detach()).float().amax(dim=(1, 2), keepdim=True)
            scale = scale.clamp_min(eps)
            v = v.float() / scale
            if self.redraw_bases and self.training:  # Hamburger: new uniform bases for every image
                bases = F.normalize(torch.rand(v.shape[0], self.width, self.rank, device=v.device), dim=1)
            else:  # B copies, not a stride-0 expand, which torch.export would pin to B == 1 (see EMAUnit)
                bases = self.bases.float().unsqueeze(0).repeat(v.shape[0], 1, 1)  # B x D x K
            # the softmax's inverse temperature on the features as given: inv_t x scale on the unit-scale ones
            inv_t = 1.0 if self.inv_t is None else self.inv_t * scale
            with iterations:
                coef = torch.softmax(inv_t * (v.transpose(1, 2) @ bases), dim=-1)  # B x N x K
                steps = self.train_steps if self.training else self.eval_steps
                for _ in range(steps):
                    coef = coef * (v.transpose(1, 2) @ bases) / (coef @ (bases.transpose(1, 2) @ bases) + eps)
                    bases = bases * (v @ coef) / (bases @ (coef.transpose(1, 2) @ coef) + eps)
            with last_step:
                # one-step gradient: the last coefficient update is differentiable in v (at each position
                # alone, unless the bases above carry gradient: "unrolled")
                coef = coef * (v.transpose(1, 2) @ bases) / (coef @ (bases.transpose(1, 2) @ bases) + eps)
                return (bases @ coef.transpose(1, 2)) * scale

    def forward(self, x: torch.Tensor, return_reconstruction: bool = False):
        """x: B x in_channels x h x w -> B x out_channels x h x w (see class docstring)."""
        check_feature_map(x, self.in_channels, type(self).__name__)
        if self.context_state == "off":
            out = self.proj(x if self.width == self.in_channels else self.embed(x))
            return (out, None) if return_reconstruction else out
        b, _, h, w = x.shape
        embedded = self.embed(x)
        bypass = x if self.width == self.in_channels else embedded  # what "off" projects
        if self.mode == "static":
            low_rank = self.low_rank()
            if self.context_state == "on":
                # relu first, then resize: a no-op at the base grid, and the branch stays a
                # constant map that inference can fold through the projection
                context = F.interpolate(F.relu(low_rank), size=(h, w), mode="bilinear", align_corners=False)
                out = self.proj(context + embedded)
            else:  # pair-only: the features bypass the context
                out = self.proj(bypass)
            if not return_reconstruction:
                return out
            estimate = F.interpolate(low_rank, size=(h, w), mode="bilinear", align_corners=False)
            return out, Reconstruction(embedded, estimate.expand(b, -1, -1, -1))
        target = F.relu(embedded)
        estimate = self._nmf(target.flatten(2)).view_as(target).to(target.dtype)  # no size baked in
        out = self.proj(estimate + target) if self.context_state == "on" else self.proj(bypass)
        return (out, Reconstruction(target, estimate)) if return_reconstruction else out


class FoldedFactorizationContext(nn.Module):
    """An eval-mode static :class:`FactorizationContext` folded for inference:
    B x in_channels x h x w -> relu(conv1x1(x) + resize(bias_map)), B x out_channels x h x w.

    Made by ``FactorizationContext.fuse()``; same outputs, about 1/8 of the MACs at the paper's
    width (one 2048 -> 256 conv instead of 2048 -> 2048 and 2048 -> 256). No reconstruction pair:
    it is for inference and export. Its parameters keep the device and dtype of ``weight``.
    """

    def __init__(self, weight: torch.Tensor, bias_map: torch.Tensor) -> None:
        super().__init__()
        self.in_channels, self.out_channels = weight.shape[1], weight.shape[0]
        self.conv = nn.Conv2d(self.in_channels, self.out_channels, 1, bias=False, device="meta")
        self.conv.weight = nn.Parameter(weight.detach().clone())
        self.register_buffer("bias_map", bias_map.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x in_channels x h x w -> B x out_channels x h x w."""
        check_feature_map(x, self.in_channels, type(self).__name__)
        bias = F.interpolate(self.bias_map, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return F.relu(self.conv(x) + bias)
