"""What every stage shares and that imports no stage: errors, hashing, progress, image
codecs, the worker-process pool, torch devices and per-sample seeds."""
