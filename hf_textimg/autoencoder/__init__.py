"""The image auto-encoder (image -> code -> image) as diffusers models: its encoder, `ConceptImageEncoder`, and as
its decoder the one-shot `ConceptDecoder` (defined in `hf_textimg.decoder`, exported here too)."""

from .modeling_autoencoder import (
    ConceptAutoencoder,
    ConceptAutoencoderOutput,
    ConceptDecoder,
    ConceptDecoderOutput,
    ConceptImageEncoder,
    ConceptImageEncoderOutput,
    reconstruction_loss,
)

__all__ = [
    "ConceptAutoencoder",
    "ConceptAutoencoderOutput",
    "ConceptDecoder",
    "ConceptDecoderOutput",
    "ConceptImageEncoder",
    "ConceptImageEncoderOutput",
    "reconstruction_loss",
]
