import sys

from lib_stylus.cli import main

sys.exit(main())
