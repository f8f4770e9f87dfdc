import pytest
import torch

from mfnet_zoo import list_models
from mfnet_zoo._registry import get_test_configs

# the shared tiny-model set, from the registry: every family with each of its declared test configs
# (context modes), so a newly registered family joins every matrix that uses TINY without an edit here
TINY = [(name, kwargs) for name in list_models() for kwargs in get_test_configs(name).values()]
TINY_IDS = [f"{name}-{key}" if key else name for name in list_models() for key in get_test_configs(name)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_bn_stats(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine params, so eval-mode checks mean something."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
