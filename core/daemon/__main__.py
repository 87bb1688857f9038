"""``python -m core.daemon``: the ``zstack-lite`` command (how ``start`` runs the node)."""

import sys

from core.daemon.cli import main

sys.exit(main())
