"""``python -m p13n`` runs the CLI."""

import sys

from p13n.cli import main

sys.exit(main())
