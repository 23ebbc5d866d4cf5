import sys

from api.main import main

# Guarded: with API_PROCESSES > 1 the servers are spawned children, which import this module as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
