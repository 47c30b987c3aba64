"""Access keys: making them, keeping them in the store with a policy each, and finding the key a request was signed with.

A key is an id (``VSAK`` and 16 base32 characters), a 40-character secret, a name, a
policy (:mod:`visage.policy`), and when it was created, last used and revoked. The
store keeps it (table ``access_keys``, in both backends) with the secret encrypted by a
:class:`SecretBox`: a Fernet key in a file of its own (mode 0600), by default beside the
data (``<data-dir>/secret.key``, the ``secret_key_file`` setting). A copy of the
database alone, a backup or a dump, does not give the secrets away; the server needs
them in clear to check signatures (SigV4 is an HMAC), so they cannot be hashed instead.
Every server that shares a PostgreSQL store needs the same key file.

:class:`KeyRing` is the one way to keys: create, list, revoke and rotate (each appended
to the audit log), and :meth:`KeyRing.lookup`, which the signature check calls. The
lookup reads the key from the store on every request (a primary-key read), with no
cache in front of it, so a revoked key is refused from the next request on, in every
worker and every server sharing the store. Only decrypting a secret is cached, by its
ciphertext, which no change of a key reuses. "Last used" is written at most once a
minute per key and process.

Keys made before keys lived in the store (``<data-dir>/keys.json``) are imported once,
as admin keys, by :meth:`KeyRing.import_legacy`; the file is then renamed
``keys.json.imported``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import stat
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken

from visage.config import Settings
from visage.errors import ConflictException, ResourceNotFoundException, SecretKeyFileError
from visage.policy import Policy
from visage.secret_file import make_once
from visage.store.base import AuditRecord, Store, StoredKey

log = logging.getLogger("visage")

#: First four characters of every access key id Visage makes (AWS uses AKIA, ASIA...).
ACCESS_KEY_PREFIX = "VSAK"
#: "Last used" is written at most this often per key and process, in seconds.
TOUCH_EVERY_S = 60.0
#: The name of the keys imported from keys.json.
IMPORTED_NAME = "imported from keys.json"

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


@dataclass(frozen=True)
class AccessKey:
    """An access key as its owner sees it: everything but the secret."""

    access_key_id: str
    name: str
    policy: Policy
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def of(cls, stored: StoredKey) -> AccessKey:
        return cls(
            stored.access_key_id,
            stored.name,
            Policy.loads(stored.policy),
            stored.created_at,
            stored.last_used_at,
            stored.revoked_at,
        )


@dataclass(frozen=True)
class ActiveKey:
    """A key that may sign requests, with its secret in clear (what the signature check needs)."""

    key: AccessKey
    secret_access_key: str = field(repr=False)


class SecretBox:
    """Encrypts and decrypts secrets with the Fernet key in ``path`` (made, mode 0600, when first needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fernet: Fernet | None = None
        self._opened: dict[str, str] = {}

    def seal(self, secret: str) -> str:
        """The secret encrypted (a Fernet token); makes the key file if there is none yet."""
        return self._cipher(create=True).encrypt(secret.encode()).decode("ascii")

    def open(self, token: str) -> str:
        """The secret a token holds; SecretKeyFileError if this key file did not seal it."""
        opened = self._opened.get(token)
        if opened is None:
            try:
                opened = self._cipher(create=False).decrypt(token.encode("ascii")).decode()
            except InvalidToken:
                raise SecretKeyFileError(
                    f"The access keys in the store were encrypted with another key file than {self.path}; "
                    "every server sharing a store needs the same key file (VISAGE_SECRET_KEY_FILE)."
                ) from None
            with self._lock:
                if len(self._opened) > 10_000:
                    self._opened.clear()
                self._opened[token] = opened
        return opened

    def _cipher(self, create: bool) -> Fernet:
        with self._lock:
            if self._fernet is None:
                if create:  # a new Fernet key, unless the file exists
                    make_once(self.path, lambda: Fernet.generate_key() + b"\n")
                try:
                    key = self.path.read_bytes().strip()
                    mode = self.path.stat().st_mode
                except FileNotFoundError:
                    raise SecretKeyFileError(
                        f"The key file {self.path}, which encrypts the access keys' secrets, is missing; "
                        "copy it from the server that made the keys (VISAGE_SECRET_KEY_FILE names it)."
                    ) from None
                if stat.S_IMODE(mode) & 0o077:
                    log.warning("The key file %s may be read by others (mode %o); chmod 600 it.", self.path, mode)
                try:
                    self._fernet = Fernet(key)
                except ValueError:
                    raise SecretKeyFileError(
                        f"The key file {self.path} does not hold a Fernet key (32 bytes, URL-safe base64)."
                    ) from None
            return self._fernet


class KeyRing:
    """The access keys of a store: made, listed, revoked, rotated and looked up."""

    def __init__(self, store: Store, box: SecretBox, touch_every: float = TOUCH_EVERY_S) -> None:
        self.store = store
        self.box = box
        self.touch_every = touch_every
        self._lock = threading.Lock()
        self._noted: dict[str, float] = {}

    @classmethod
    def open(cls, store: Store, secret_key_path: Path, legacy_path: Path | None = None) -> KeyRing:
        """The key ring of ``store``, with the keys of ``legacy_path`` (a keys.json) imported if it exists."""
        ring = cls(store, SecretBox(secret_key_path))
        if legacy_path is not None:
            ring.import_legacy(legacy_path)
        return ring

    # Managing keys -----------------------------------------------------------------
    def create(self, policy: Policy, name: str, by: str) -> tuple[AccessKey, Credentials]:
        """A new key with this policy; the only time its secret is seen. ``by`` made it (for the audit log)."""
        credentials = generate_credentials()
        stored = self._stored(credentials, name, policy)
        self.store.add_access_key(stored, self._record(by, "CreateAccessKey", stored))
        return AccessKey.of(stored), credentials

    def keys(self) -> list[AccessKey]:
        """Every key, revoked ones too, oldest first."""
        return [AccessKey.of(stored) for stored in self.store.list_access_keys()]

    def get(self, access_key_id: str) -> AccessKey:
        return AccessKey.of(self._stored_key(access_key_id))

    def _stored_key(self, access_key_id: str) -> StoredKey:
        stored = self.store.get_access_key(access_key_id)
        if stored is None:
            raise ResourceNotFoundException(f"No access key has the id {access_key_id}; `visage keys list` shows them.")
        return stored

    def revoke(self, access_key_id: str, by: str) -> AccessKey:
        """Revokes the key from its next request on (a revoked key stays revoked)."""
        key = self._stored_key(access_key_id)  # (never deleted; its name and policy never change)
        return AccessKey.of(
            self.store.revoke_access_key(access_key_id, _now(), self._record(by, "RevokeAccessKey", key))
        )

    def rotate(self, access_key_id: str, by: str) -> tuple[AccessKey, Credentials]:
        """A new key with the old one's name and policy; the old one is revoked in the same transaction."""
        old = self.get(access_key_id)
        credentials = generate_credentials()
        stored = self._stored(credentials, old.name, old.policy)
        self.store.rotate_access_key(
            access_key_id, stored, self._record(by, "RotateAccessKey", stored, {"replaces": access_key_id})
        )
        return AccessKey.of(stored), credentials

    def import_legacy(self, path: Path) -> list[str]:
        """Imports the keys of a keys.json (Visage's key file before keys lived in the store) as
        admin keys, then renames it ``keys.json.imported``. Returns the ids imported (none that
        the store already had)."""
        try:
            listed = json.loads(path.read_text())["keys"]
        except FileNotFoundError:
            return []
        imported = []
        for entry in listed:
            credentials = Credentials(entry["access_key_id"], entry["secret_access_key"])
            stored = self._stored(credentials, IMPORTED_NAME, Policy.admin())
            try:
                self.store.add_access_key(
                    stored, self._record("visage", "ImportAccessKey", stored, {"from": str(path)})
                )
            except ConflictException:
                continue  # imported already (by another process, or before a crash)
            imported.append(credentials.access_key_id)
        try:
            os.replace(path, path.with_name(path.name + ".imported"))
        except FileNotFoundError:
            pass  # another process renamed it first
        return imported

    # Signing requests --------------------------------------------------------------
    def lookup(self, access_key_id: str) -> ActiveKey | None:
        """The key, with its secret, if it exists and is not revoked; read from the store each time."""
        stored = self.store.get_access_key(access_key_id)
        if stored is None or stored.revoked_at is not None:
            return None
        return ActiveKey(AccessKey.of(stored), self.box.open(stored.secret))

    def note_use(self, key: AccessKey) -> None:
        """Records that the key signed a request: at most once every ``touch_every`` seconds per key
        and process. A failure to record it is logged, never raised: it must not fail the request."""
        now = time.monotonic()
        with self._lock:
            if now - self._noted.get(key.access_key_id, -self.touch_every) < self.touch_every:
                return
            self._noted[key.access_key_id] = now
        try:
            self.store.touch_access_key(key.access_key_id, _now())
        except Exception:
            log.warning("could not record the use of access key %s", key.access_key_id, exc_info=True)

    def check(self) -> None:
        """Decrypts an active key's secret, so that a wrong key file stops a server at start, not at a request."""
        for stored in self.store.list_access_keys():
            if stored.revoked_at is None:
                self.box.open(stored.secret)
                return

    # Helpers -------------------------------------------------------------------------
    def _stored(self, credentials: Credentials, name: str, policy: Policy) -> StoredKey:
        """The key to store, its secret sealed; refused (SecretKeyFileError) when the key file is not the
        one that sealed the keys already stored, so no key is made that the other servers cannot open."""
        self.check()
        return StoredKey(
            access_key_id=credentials.access_key_id,
            name=name,
            secret=self.box.seal(credentials.secret_access_key),
            policy=policy.dumps(),
            created_at=_now(),
        )

    def _record(self, by: str, operation: str, key: StoredKey, extra: dict[str, str] | None = None) -> AuditRecord:
        """The audit record of a change to ``key``, made by ``by``."""
        return AuditRecord(
            time=_now(),
            access_key_id=by,
            operation=operation,
            collection_id=None,
            threshold=None,
            match_count=0,
            best_similarity=None,
            details={
                "key": key.access_key_id,
                "name": key.name,
                "policy": Policy.loads(key.policy).summary(),
                **(extra or {}),
            },
        )


def _now() -> datetime:
    return datetime.now(UTC)


def create_key_command(settings: Settings) -> str:
    """The command that adds a key where a server with these settings looks for keys: its data dir,
    or its PostgreSQL store (shown without the password, which libpq can also take from PGPASSWORD
    or ~/.pgpass), and its secret key file when it is not the default."""
    if settings.postgres_url is None:
        where = f"--data-dir {shlex.quote(str(settings.data_dir))}"
    else:
        parts = urlsplit(settings.postgres_url)
        netloc = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}@" if parts.username else ""
        where = f"--store {shlex.quote(urlunsplit(parts._replace(netloc=user + netloc)))}"
    if settings.secret_key_file is not None:
        where += f" --secret-key-file {shlex.quote(str(settings.secret_key_file))}"
    return f"visage keys create {where}"
