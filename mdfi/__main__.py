"""``python -m mdfi`` is the ``mdfi`` command."""
import sys

from .cli import main

sys.exit(main())
