"""Image I/O: the only place where files become tensors and back.

Images are [0, 1] float32 (C, H, W) tensors outside the model (C = 1 grey, 3 colour) and [-1, 1]
inside it (``to_model_range`` / ``from_model_range``). Reading accepts what people have on disk
(``read``), alpha is kept apart so that a restoration never sees it and ``write_image`` puts it
back; outputs are PNGs with text metadata, written atomically (``write``). Inpainting masks are
bool (H, W) tensors, True = fill (``masks``); ``pad_to_multiple`` gives models the sizes they need
and crops back exactly (``tensors``). Folders of images are listed by ``list_images`` with the one
``IMAGE_SUFFIXES`` list (``files``).

One size limit guards every decoder: a file declaring more than ``max_pixels()`` pixels (width x
height, read from its header before decoding) is refused. Raise it for trusted large files with
``guidedinv.io.MAX_PIXELS = N`` (below) or the environment variable ``GUIDEDINV_MAX_PIXELS=N``.
"""
from .files import IMAGE_SUFFIXES, is_image_file, list_images
from .masks import MASK_SPECS, check_mask, make_mask, read_mask
from .read import ACCEPTED_FORMATS, DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, ImageData, check_pixels, max_pixels, read_image
from .tensors import PAD_MODES, Crop, from_model_range, pad_sides, pad_to_multiple, to_model_range
from .write import TEMP_SUFFIX, atomic_write_bytes, encode_png, write_image

__all__ = [
    "IMAGE_SUFFIXES",
    "is_image_file",
    "list_images",
    "ACCEPTED_FORMATS",
    "ImageData",
    "read_image",
    "MAX_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "max_pixels",
    "check_pixels",
    "MASK_SPECS",
    "read_mask",
    "check_mask",
    "make_mask",
    "write_image",
    "encode_png",
    "atomic_write_bytes",
    "TEMP_SUFFIX",
    "PAD_MODES",
    "Crop",
    "pad_to_multiple",
    "pad_sides",
    "to_model_range",
    "from_model_range",
]

# The decoders' size limit in pixels (width x height); None: $GUIDEDINV_MAX_PIXELS, else
# DEFAULT_MAX_PIXELS (128 Mpx). read_image looks it up at every call (``max_pixels``).
MAX_PIXELS: int | None = None
