"""Every recipe attentive ships: importing this module registers them all."""

from . import classification, instruct, language_modeling, offline_rl, translation  # noqa: F401
