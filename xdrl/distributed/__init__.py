"""Ray Tune side of xdrl: trainables, search spaces and the metric bridge.

This package may import Ray Tune and Optuna; it calls the builder and never
builds a TorchRL object itself.
"""
