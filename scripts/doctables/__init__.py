"""Renderers of whole result files for scripts/docgen.py: each module defines RENDERERS = {name: fn(data) -> Markdown}."""
