"""Entry point of ``python -m ecomeasure.bench``."""
import sys

from .cli import main

sys.exit(main())
