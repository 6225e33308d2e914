"""hf-textimg: train and run small text-to-image models the Hugging Face way.

Importing the package registers its models with transformers' `AutoConfig`/`AutoModel`
and its pipelines with diffusers, so `AutoModel.from_pretrained(folder)` and
`DiffusionPipeline.from_pretrained(folder)` resolve them.
"""

__version__ = "0.1.0"

from .concept import (  # noqa: E402  (registers the Auto classes)
    ConceptConfig,
    ConceptModel,
    ConceptTextConfig,
    ConceptTextModel,
    ConceptVisionConfig,
    ConceptVisionModel,
)
from .tokenization import train_tokenizer  # noqa: E402
