"""Class-conditional GAN synthesis: models, pure losses, DiffAugment, the training step
(:mod:`~pipeline.gan.train`), sampling, metrics, the synthesis stage
(:mod:`~pipeline.gan.stage`, :mod:`~pipeline.gan.synthesis`) and the utility gate
(:mod:`~pipeline.gan.gate`)."""
