"""xdrl: Ray-distributed experiment runner for deep reinforcement learning on TorchRL."""

__version__ = "0.1.0"
