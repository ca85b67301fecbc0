"""Config -> TorchRL objects: environments, models, losses, collectors, trainers, hooks.

One build path serves ``xdrl train`` and every Ray Tune trial. This package knows
no Ray: the device is a parameter.
"""
