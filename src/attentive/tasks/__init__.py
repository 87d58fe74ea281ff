"""Jobs the trainer can run: each knows its data, loss and evaluation."""

from .base import Task

__all__ = ["Task"]
