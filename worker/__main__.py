import sys

from worker.main import main

# Guarded: BACKEND=auto measures backends in a spawned child, which imports this module as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
