import sys

from livesense.cli import main

sys.exit(main())
