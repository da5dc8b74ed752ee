"""`python -m repnext_core.cli`: the same as the `repnext` console script."""

import sys

from repnext_core.cli.main import main

sys.exit(main())
