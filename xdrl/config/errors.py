"""The one error type a user sees for a bad configuration."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value that cannot be used.

    The message names the dotted key, repeats the value and says what would be
    accepted, on one line: ``xdrl`` prints it and exits with status 2 before
    anything is built.

    Examples:
        >>> str(ConfigError("algo.lr", -1.0, "a positive number"))
        'algo.lr=-1.0 is not accepted: expected a positive number'
    """

    def __init__(self, key: str, value: Any, accepted: str) -> None:
        self.key, self.value, self.accepted = key, value, accepted
        super().__init__(f"{key}={value!r} is not accepted: expected {accepted}")

    def __reduce__(self) -> tuple[type, tuple[str, Any, str]]:
        # Picklable with its own arguments: it crosses process boundaries (Ray trials, process pools).
        return (type(self), (self.key, self.value, self.accepted))
