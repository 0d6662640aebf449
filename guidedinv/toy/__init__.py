"""The class-conditional demonstration: a K-class toy image dataset made by our own code, the four
small models trained on it (prior, noisy classifier, conditional prior, clean classifier), and the
evaluation of guided generation by the clean classifier. ``python -m guidedinv.toy eval`` prints
the accuracy-vs-scale table of guidedinv/weights/TOY_CARD.md."""
from .data import TOY, ToyConfig, make_dataset, render
from .evaluate import ToyModels, accuracy, classify, clean_accuracy, load_toy, scale_table

__all__ = ["TOY", "ToyConfig", "make_dataset", "render", "ToyModels", "load_toy", "classify", "clean_accuracy",
           "accuracy", "scale_table"]
