"""``python -m opbeat_agent release ...``, the same as the ``opbeat-agent`` console script."""

import sys

from .cli import main

sys.exit(main())
