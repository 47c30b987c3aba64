"""A secret made once and kept in a file only its owner may read (mode 0600).

Several processes may start at once and each find the file missing: each writes its
own secret to a temporary file, then links it into place, which only the first can
do; the others read the winner's. So the file is never seen half-written, and all
agree on one secret. Used for the console's session secret and the key file that
encrypts the access keys' secrets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def make_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes in ``path``; if there is no such file, ``make()``'s written there first
    (mode 0600, fsynced), unless another process got there first."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = make()
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)  # fails if another process made it first: then use theirs
    except FileExistsError:
        return path.read_bytes()
    finally:
        temporary.unlink()
    return secret
