from .image_grid import make_captioned_grid
from .resolution import check_resolution

__all__ = ["check_resolution", "make_captioned_grid"]
