"""``python -m calcdx`` runs the command-line interface."""

from calcdx.cli.main import main

raise SystemExit(main())
