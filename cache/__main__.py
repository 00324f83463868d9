"""`python -m cache`: see cache.cli."""

from cache.cli import main

raise SystemExit(main())
