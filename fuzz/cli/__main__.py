"""``python -m hakfuzz.cli``: the same as the ``hakfuzz`` command."""

import sys

from hakfuzz.cli import main

sys.exit(main())
