"""Access keys: the pairs this server accepts, kept in ``<data-dir>/keys.json`` (mode 0600).

``visage keys create`` adds a pair; a running server sees it at the next request,
since the file is re-read whenever it changes.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from visage.api.sigv4 import Credentials, generate_credentials


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
                self._keys = {k["access_key_id"]: k["secret_access_key"] for k in json.loads(self.path.read_text())["keys"]}
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
            json.dump({"keys": [{"access_key_id": k, "secret_access_key": s} for k, s in keys.items()]}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        return credentials
