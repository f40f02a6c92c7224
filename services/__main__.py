"""`python -m mailstream ...`: the same as the `mailstream` console script."""

from mailstream.cli import main

raise SystemExit(main())
