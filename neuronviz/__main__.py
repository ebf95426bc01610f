import sys

from neuronviz.cli import main

sys.exit(main())
