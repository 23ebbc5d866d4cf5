"""``sentimentalyzer <command> [options]``: every process of the service behind one command, each with ``--help``
listing its settings (flags, their environment variables and defaults; common/cli.py).

    sentimentalyzer serve --workers 2      Redis (if none answers), the API and the workers, on this machine
    sentimentalyzer api                    the API alone (as `python -m api`)
    sentimentalyzer worker                 one model worker (as `python -m worker`)
    sentimentalyzer naive                  the naive baseline server (as `python -m naive`)
    sentimentalyzer make-model bench DIR   write an offline model (bench: DistilBERT-SST-2 size, random weights)
"""

from __future__ import annotations

import importlib
import sys

# command -> (module with main(argv, prog), what it is). Imported only when run: `--help` of one command loads no
# other's code (the API's imports no model runtime).
COMMANDS = {
    "serve": ("sentimentalyzer.serve", "Redis (if none answers), the API and N workers on this machine; Ctrl-C stops all"),
    "api": ("api.main", "the API servers (HTTP in, Redis queue, answers back)"),
    "worker": ("worker.main", "one model worker (Redis queue in, batched forward passes, answers out)"),
    "naive": ("naive.__main__", "the naive baseline server: one forward pass per request"),
    "make-model": ("engine.offline.make_model", "write an offline model directory (bench or tiny)"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return ("usage: sentimentalyzer <command> [options]   (sentimentalyzer <command> --help: its options)\n\n"
            "Text classification with dynamic batching over Redis.\n\ncommands:\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"sentimentalyzer: unknown command {command!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest, prog=f"sentimentalyzer {command}")
