"""``python -m attentive`` (what ``torchrun ... -m attentive train`` runs)."""

import sys

from .cli.main import main

sys.exit(main())
