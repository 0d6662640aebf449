"""Linear measurement operators y = A x with exact adjoints and pseudo-inverses, exact SVDs where
they are cheap (``operator.spectral(x)``), and the noise model.

Images are batched (B, C, H, W) of any size, float32 or float64, on any device.
"""
from .base import Compose, LinearOperator, conjugate_gradient
from .blur import Blur, boundary_index, check_kernel, check_kernel_fits, gaussian_kernel, load_kernel, motion_kernel
from .downsample import Downsample, crop_to_multiple, resize_matrix
from .grey import ColourToGrey
from .identity import Identity
from .inpaint import Inpainting
from .noise import GaussianNoise, as_noise
from .spectral import Spectral

__all__ = [
    "LinearOperator",
    "Compose",
    "conjugate_gradient",
    "Inpainting",
    "Downsample",
    "crop_to_multiple",
    "resize_matrix",
    "Blur",
    "boundary_index",
    "check_kernel",
    "check_kernel_fits",
    "gaussian_kernel",
    "motion_kernel",
    "load_kernel",
    "Identity",
    "ColourToGrey",
    "GaussianNoise",
    "as_noise",
    "Spectral",
]
