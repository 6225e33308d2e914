"""hf-textimg: train and run small text-to-image models the Hugging Face way.

Importing the package registers its models with transformers' `AutoConfig`/`AutoModel`
and its pipelines with diffusers, so `AutoModel.from_pretrained(folder)` and
`DiffusionPipeline.from_pretrained(folder)` resolve them. Pipeline folders name their
components as `["hf_textimg", "<ClassName>"]`, so every component class is exported here.
"""

__version__ = "0.1.0"

from .autoencoder import ConceptAutoencoder, ConceptImageEncoder  # noqa: E402
from .decoder import ConceptDecoder  # noqa: E402
from .concept import (  # noqa: E402  (registers the Auto classes)
    ConceptConfig,
    ConceptModel,
    ConceptTextConfig,
    ConceptTextModel,
    ConceptVisionConfig,
    ConceptVisionModel,
)
from .diffusion import build_unet, unet_config  # noqa: E402
from .pipelines import ConceptDiffusionPipeline, ConceptPromptEmbeds, DecoderPipeline  # noqa: E402  (registers the pipelines with diffusers)
from .pipelines import ConceptCascadePipeline, ConceptSuperResolutionPipeline  # noqa: E402
from .pipelines import ConceptPriorPipeline, ConceptUnCLIPPipeline  # noqa: E402
from .tokenization import train_tokenizer  # noqa: E402
