"""Access keys: making the pairs this server accepts, and keeping them in ``<data-dir>/keys.json`` (mode 0600).

``visage keys create`` adds a pair; a running server sees it at the next request,
since the file is re-read whenever it changes. Checking a request's signature
with them is :mod:`visage.api.sigv4`'s work.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path

#: First four characters of every access key id Visage makes (AWS uses AKIA, ASIA...).
ACCESS_KEY_PREFIX = "VSAK"

_KEY_ID_ALPHABET = string.ascii_uppercase + "234567"  # base32, like AWS key ids
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"  # like AWS secrets


@dataclass(frozen=True)
class Credentials:
    """An access key pair; the secret is left out of ``repr`` so it does not reach logs."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


def generate_credentials() -> Credentials:
    """Make a new random key pair in AWS's shapes, so that any AWS SDK accepts it.

    The access key id is 20 characters: :data:`ACCESS_KEY_PREFIX` and 16 base32
    characters (uppercase letters and 2-7). The secret is 40 characters of
    letters, digits, ``+`` and ``/``, drawn from :mod:`secrets`.
    """
    key_id = ACCESS_KEY_PREFIX + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return Credentials(key_id, secret)


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, str] = {}

    def _read(self) -> dict[str, str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._keys = {
                    k["access_key_id"]: k["secret_access_key"] for k in json.loads(self.path.read_text())["keys"]
                }
                self._stamp = stamp
            return self._keys

    def secret(self, access_key_id: str) -> str | None:
        return self._read().get(access_key_id)

    def access_key_ids(self) -> list[str]:
        return list(self._read())

    def create(self) -> Credentials:
        """Make a new pair, save it, and return it (the only time the secret is shown)."""
        credentials = generate_credentials()
        keys = dict(self._read())
        keys[credentials.access_key_id] = credentials.secret_access_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {"keys": [{"access_key_id": k, "secret_access_key": s} for k, s in keys.items()]}, handle, indent=1
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        return credentials


def create_key_command(data_dir: Path) -> str:
    """The command that adds a key to the keys of ``data_dir``, to print where a user needs it."""
    return f"visage keys create --data-dir {shlex.quote(str(data_dir))}"
