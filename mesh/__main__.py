"""``python -m mesh`` runs the command line."""

import sys

from mesh.cli import main

sys.exit(main())
