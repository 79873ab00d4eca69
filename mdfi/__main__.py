"""``python -m mdfi`` is the ``mdfi`` command."""
import sys

try:
    from .cli import main
except ImportError as exc:
    # Run inside a source checkout without a build, the checkout's mdfi/ shadows the installed
    # package and lacks the compiled extensions: say so in one line (mdfi/_ext/__init__.py).
    if not str(exc.name or "").startswith("mdfi._ext"):
        raise
    print(f"mdfi: error: {exc}", file=sys.stderr)
    sys.exit(2)

sys.exit(main())
