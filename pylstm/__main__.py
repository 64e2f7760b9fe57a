"""`python -m pylstm`: the same as the `pylstm` command (see pylstm.cli)."""

import sys

from pylstm.cli import main

if __name__ == "__main__":
    sys.exit(main())
