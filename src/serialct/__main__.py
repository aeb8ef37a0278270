import sys

from serialct.cli import main

sys.exit(main())
