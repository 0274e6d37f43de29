"""Classical augmentation of the training split: the recipe and its backends
(:mod:`~pipeline.augment.recipe` for albumentations, :mod:`~pipeline.augment.tv` for
torchvision), MixUp/CutMix (:mod:`~pipeline.augment.mixing`), copies per class
(:mod:`~pipeline.augment.counts`) and choosing the recipe on validation data
(:mod:`~pipeline.augment.tune`)."""
