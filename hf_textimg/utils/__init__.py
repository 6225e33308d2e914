from .image_grid import make_captioned_grid

__all__ = ["make_captioned_grid"]
