"""Class-conditional GAN synthesis: models, losses, DiffAugment, training, sampling."""
