"""Command lines generated from the settings classes: every setting is a flag (``--max-batch-size``) named after its
environment variable (``MAX_BATCH_SIZE``), with its default and description in ``--help``, as TEI's and Triton's
launchers list theirs. A flag wins over the environment: the parsed flags are written into this process's
environment, so that everything that reads the settings later — this process, the API's server processes,
BACKEND=auto's measuring child — sees the same values.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Sequence

from pydantic_settings import BaseSettings

Extra = Callable[[argparse.ArgumentParser], None]


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return field.upper()


def _default_text(cls: type[BaseSettings], field: str) -> str:
    info = cls.model_fields[field]
    default = info.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default) if default != "" else '""'


def _declaring_class(cls: type[BaseSettings], field: str) -> type:
    """The class in ``cls``'s hierarchy that declares ``field`` first (its help group)."""
    for base in reversed(cls.__mro__):
        if field in getattr(base, "__annotations__", {}):
            return base
    return cls


def _group_title(base: type) -> str:
    doc = (base.__doc__ or "").strip().splitlines()
    return f"{base.__name__} ({doc[0].rstrip('.')})" if doc else base.__name__


def add_settings(parser: argparse.ArgumentParser, classes: Iterable[type[BaseSettings]]) -> list[str]:
    """A flag per field of ``classes`` (each field once, grouped by the class that declares it); returns the fields."""
    fields: list[str] = []
    groups: dict[type, argparse._ArgumentGroup] = {}
    for cls in classes:
        for field, info in cls.model_fields.items():
            if field in fields:
                continue
            fields.append(field)
            base = _declaring_class(cls, field)
            if base not in groups:
                groups[base] = parser.add_argument_group(_group_title(base))
            metavar = "true|false" if info.annotation is bool else env_name(field)
            description = (info.description or "").replace("%", "%%")
            groups[base].add_argument(
                flag(field), dest=field, metavar=metavar, default=None,
                help=f"[env {env_name(field)}; default {_default_text(cls, field)}] {description}")
    return fields


def parse_into_environment(classes: Sequence[type[BaseSettings]], argv: Sequence[str] | None, *, prog: str,
                           description: str, extra: Extra | None = None) -> argparse.Namespace:
    """Parse ``argv`` (``--help`` prints every setting and exits 0) and write the settings it names into the
    environment, over what was there. ``extra`` adds the command's own arguments. Values are checked when the
    settings are built (common.settings.load_or_exit), with the same messages whether they came as flags or not."""
    parser = argparse.ArgumentParser(prog=prog, description=description, usage="%(prog)s [options]",
                                     epilog="Every setting is also read from its environment variable; a flag wins.")
    if extra is not None:
        extra(parser)
    fields = add_settings(parser, classes)
    args = parser.parse_args(argv)
    for field in fields:
        value = getattr(args, field)
        if value is not None:
            os.environ[env_name(field)] = value
    return args
