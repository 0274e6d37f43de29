"""Evaluation: the reference classifier (:mod:`~pipeline.evaluate.classifier`), which tuning
and the utility gate train too, and ``expand evaluate`` (:mod:`~pipeline.evaluate.evaluation`)."""
