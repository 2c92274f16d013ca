"""``python -m zooscope.cli``: the command line, as the ``zooscope`` script runs it."""

import sys

try:
    from zooscope.cli import main
except KeyboardInterrupt:  # Ctrl-C while importing
    print("interrupted", file=sys.stderr)
    sys.exit(130)

main()
