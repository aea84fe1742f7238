"""``python -m rumpnet.hijack -- prog args``: the ``rumphijack`` command."""

import sys

from rumpnet.hijack.cli import main

sys.exit(main())
