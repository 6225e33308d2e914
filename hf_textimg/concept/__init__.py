"""The concept space: caption and image map to the same unit-norm vector (CLIP-style dual encoder).

Importing this package registers the configs and models with `AutoConfig` / `AutoModel`, so a saved folder loads
with `AutoModel.from_pretrained(path)`. Without the package, `trust_remote_code=True` loads the copies of
`configuration_concept.py` and `modeling_concept.py` that `save_pretrained` writes beside the weights.
"""

from transformers import AutoConfig, AutoModel

from .configuration_concept import ConceptConfig, ConceptTextConfig, ConceptVisionConfig
from .losses import contrastive_loss, regression_loss
from .modeling_concept import (
    ConceptModel,
    ConceptOutput,
    ConceptPreTrainedModel,
    ConceptProjectionHead,
    ConceptTextModel,
    ConceptTextOutput,
    ConceptVisionModel,
    ConceptVisionOutput,
)


# exist_ok: re-importing (e.g. importlib.reload) must not fail.
for _config_cls, _model_cls in (
    (ConceptConfig, ConceptModel),
    (ConceptTextConfig, ConceptTextModel),
    (ConceptVisionConfig, ConceptVisionModel),
):
    AutoConfig.register(_config_cls.model_type, _config_cls, exist_ok=True)
    AutoModel.register(_config_cls, _model_cls, exist_ok=True)

__all__ = [
    "ConceptConfig",
    "ConceptModel",
    "ConceptOutput",
    "ConceptPreTrainedModel",
    "ConceptProjectionHead",
    "ConceptTextConfig",
    "ConceptTextModel",
    "ConceptTextOutput",
    "ConceptVisionConfig",
    "ConceptVisionModel",
    "ConceptVisionOutput",
    "contrastive_loss",
    "regression_loss",
]
