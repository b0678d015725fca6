"""`python -m clustcontrol.contract [REPO]`: rewrite the files generated from the contract."""

import sys

from clustcontrol.contract.generate import main

sys.exit(main(sys.argv[1:]))
