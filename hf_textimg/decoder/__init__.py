"""The one-shot concept decoder (code -> pixels), a diffusers model; `DecoderPipeline` generates with it."""

from .modeling_decoder import CODE_CONDITIONINGS, ConceptDecoder, ConceptDecoderOutput

__all__ = ["CODE_CONDITIONINGS", "ConceptDecoder", "ConceptDecoderOutput"]
