import sys

from rudolph.demo.cli import main

sys.exit(main())
