"""Training of the embedded models: data sampling, the loop, and export to safetensors."""
from .data import CropSampler, describe, labelled_images, list_images, read_rgb
from .export import export_safetensors, read_init
from .loop import Trainer, TrainingDiverged
from .settings import (
    HARMLESS,
    OPTION_NAMES,
    SettingsChanged,
    TrainSettings,
    check_network,
    check_resume,
    read_checkpoint,
)

__all__ = ["CropSampler", "read_init", "describe", "labelled_images", "list_images", "read_rgb", "export_safetensors", "Trainer",
           "TrainSettings", "SettingsChanged", "TrainingDiverged", "check_network", "check_resume", "read_checkpoint",
           "HARMLESS", "OPTION_NAMES"]
