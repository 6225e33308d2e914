"""Image auto-encoder and the concept decoder (512-d code -> pixels), as diffusers models."""

from .modeling_autoencoder import (
    SUPPORTED_IMAGE_SIZES,
    ConceptAutoencoder,
    ConceptAutoencoderOutput,
    ConceptDecoder,
    ConceptDecoderOutput,
    ConceptImageEncoder,
    ConceptImageEncoderOutput,
    reconstruction_loss,
)

__all__ = [
    "SUPPORTED_IMAGE_SIZES",
    "ConceptAutoencoder",
    "ConceptAutoencoderOutput",
    "ConceptDecoder",
    "ConceptDecoderOutput",
    "ConceptImageEncoder",
    "ConceptImageEncoderOutput",
    "reconstruction_loss",
]
