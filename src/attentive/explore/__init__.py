"""The attention explorer: a local web page that shows what a model attends to, for every model
family attentive runs, with the Transformer's ideas shown on the model that is loaded.

``load_subject(spec)`` loads a model (``make_subject`` wraps one in memory); ``create_app``
serves the page and the JSON endpoints (``make_router`` is the endpoints alone, for another
FastAPI app to mount); ``export_html`` writes one self-contained HTML file for one input.
Every weight shown comes from ``attention(..., need_weights=True)`` through ``capture.AttentionTap``.
"""

from .api import Registry, create_app, make_router, mount
from .capture import AttentionTap, Site, StreamTap
from .export import export_html, notebook
from .load import load_subject, make_subject
from .subject import Analysis, Subject

__all__ = [
    "Analysis",
    "AttentionTap",
    "Registry",
    "Site",
    "StreamTap",
    "Subject",
    "create_app",
    "export_html",
    "load_subject",
    "make_router",
    "make_subject",
    "mount",
    "notebook",
]
