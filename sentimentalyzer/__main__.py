import sys

from sentimentalyzer.cli import main

# Guarded: the API's server processes and BACKEND=auto's measuring child are spawned, importing this as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
