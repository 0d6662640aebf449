"""Training of the embedded models: data sampling, the loop, and export to safetensors."""
from .data import CropSampler, labelled_images, list_images
from .export import export_safetensors
from .loop import Trainer, TrainSettings

__all__ = ["CropSampler", "labelled_images", "list_images", "export_safetensors", "Trainer", "TrainSettings"]
