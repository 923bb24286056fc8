import sys

from edgelambda.cli import main

sys.exit(main())
