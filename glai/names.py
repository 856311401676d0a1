"""The one check of every folder or file name built from a config value, so that no name leaves its root.

``dataset.name`` and ``backbone.name`` name the embedding and token cache's folders under ``cache_dir``;
``experiment.name``, ``head`` and ``tag`` name the record's folders under ``results_dir`` and the tuned files'
under ``tuned_dir``. Each goes through :func:`path_part` before it becomes a path: ``..`` never climbs out of the
root, and ``.`` or an empty name never writes into the root itself.
"""

from __future__ import annotations

import re
from typing import Any

from glai.errors import ConfigError

__all__ = ["path_part"]

#: A name a record or tuned file is kept under exactly: letters, digits, ``_``, ``-``, ``.``, not starting with
#: ``.`` or ``-``; the tables read the record's folder back as the name it holds.
_EXACT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _replaced(text: str) -> str:
    """``text`` with every character but letters, digits, ``-``, ``_`` and ``.`` replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def path_part(key: str, value: Any, *, exact: bool = False, nested: bool = False, fix: str | None = None) -> str:
    """The folder or file name that the config value ``value`` of ``key`` becomes under its root.

    Without ``exact`` a character other than a letter, a digit, ``-``, ``_`` or ``.`` becomes ``_`` (a path
    separator included: a dataset named ``org/data`` is cached under ``org_data``); the full name is kept in the
    cache's manifest. With ``exact`` such a name is refused instead, and so is ``..`` anywhere in it: the name is
    read back from the folder. ``nested`` lets ``/`` separate folders (``offline/A1``), each part checked alone.

    Args:
        key: the config key the value comes from (``dataset.name``), named in the error.
        value: the config value (converted with ``str``).
        exact: refuse what would be replaced (record and tuned-file folders).
        nested: ``/`` separates folders (``experiment.name``); an absolute path is refused.
        fix: the override the error suggests (default ``<key>=my_<last part of key>``).

    Returns:
        The name to join to the root: never empty, ``.``, ``..`` or absolute, and without a separator unless
        ``nested``.

    Raises:
        ConfigError: naming ``key``: the name (or one of its ``nested`` parts) is empty, ``.`` or ``..``, or, with
            ``exact``, holds another character.
    """
    text = str(value)
    fix = fix or f"{key}=my_{key.rsplit('.', 1)[-1]}"
    parts = text.split("/") if nested else [text]
    what = "'/'-separated folder names" if nested else "a folder or file name"
    if exact:
        if not all(_EXACT.match(p) and ".." not in p for p in parts):
            separator = "" if nested else " or '/'"
            raise ConfigError(f"{key}={text!r}: becomes {what} under its root folder (results_dir, tuned_dir): "
                              f"letters, digits, '_', '-', '.' only, not starting with '.' or '-', no '..'{separator}. "
                              f"Fix: {fix}")
        return text
    out = [_replaced(p) for p in parts]
    if any(p in ("", ".", "..") for p in out):
        raise ConfigError(f"{key}={text!r}: becomes {what} under its root folder (cache_dir): it may not be empty, "
                          f"'.' or '..', which would name the root itself or its parent. Fix: {fix}")
    return "/".join(out)
