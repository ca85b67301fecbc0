"""A run's records as files: what each holds and the one rule they follow after a restore.

Knows file formats only (JSON lines, W&B run files, TorchRL's CSV logger); no
Ray, no TorchRL trainer. Every layer above may read records through it.
"""
