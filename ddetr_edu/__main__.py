"""``python -m ddetr_edu <command>``: see :mod:`ddetr_edu.cli`."""
import sys

from ddetr_edu.cli import main

if __name__ == "__main__":
    sys.exit(main())
