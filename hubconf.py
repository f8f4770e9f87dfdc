"""torch.hub entry points: ``torch.hub.load("<owner>/<repo>", "mfnet_r50", pretrained=True)``.

One entry per registered model, each ``create_model(name, **kwargs)``.
"""
from mfnet_zoo import create_model as _create_model
from mfnet_zoo import list_models as _list_models
from mfnet_zoo import model_entrypoint as _model_entrypoint

dependencies = ["torch", "torchvision", "timm", "segmentation_models_pytorch", "huggingface_hub", "safetensors"]


def _entry(name: str):
    def entry(pretrained=False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = _model_entrypoint(name).__doc__
    return entry


globals().update({_name: _entry(_name) for _name in _list_models()})
