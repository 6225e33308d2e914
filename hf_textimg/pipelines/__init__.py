"""Pipelines (`DiffusionPipeline` subclasses). Each pipeline module registers its class
with diffusers on import, so `DiffusionPipeline.from_pretrained(folder)` finds it."""

from .pipeline_utils import OUTPUT_TYPES, TextToImageMixin, register_with_diffusers
from .pipeline_decoder import DecoderPipeline
from .pipeline_diffusion import ConceptDiffusionPipeline
from .prompt_embeds import ConceptPromptEmbeds, encode_concept
from .pipeline_superres import ConceptSuperResolutionPipeline
from .pipeline_cascade import ConceptCascadePipeline
from .pipeline_prior import ConceptPriorPipeline
from .pipeline_unclip import ConceptUnCLIPPipeline
