"""A cached attribute for the per-step objects of the update (layers, requantizations): made on first read."""

from __future__ import annotations


class cached_attribute:  # noqa: N801 (named as the decorator it replaces)
    """``functools.cached_property`` without its lock (Python 3.11 takes one on every first read, and every gradient
    step makes new layers): the first read computes the value and stores it in the instance, which later reads find."""

    def __init__(self, function) -> None:
        self.function, self.__doc__ = function, function.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.function(instance)
        return value
