"""Settings: built and validated once, from defaults, ``VISAGE_*`` variables and flags;
a bad value is one line from the real command line, whatever the command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from visage.config import Settings, SettingsError
from visage.contract import shape_max

from .conftest import RunningServer, run_visage


def test_defaults_are_valid_and_the_image_limit_is_the_models():
    settings = Settings()
    assert settings.max_image_bytes == shape_max("ImageBlob") == 5 * 1024 * 1024
    assert settings.auth and settings.postgres_url is None
    assert settings.keys_path == Path("visage-data") / "keys.json"
    assert settings.sqlite_path == Path("visage-data") / "visage.db"
    assert settings.secret_key_path == Path("visage-data") / "secret.key" and not settings.tls


def test_the_secret_key_file_and_tls_files():
    settings = Settings.from_env({"VISAGE_SECRET_KEY_FILE": "/etc/visage/secret.key"}, data_dir=Path("d"))
    assert settings.secret_key_path == Path("/etc/visage/secret.key")
    assert Settings.from_json(settings.to_json()) == settings
    tls = Settings(tls_cert=Path("cert.pem"), tls_key=Path("key.pem"))
    assert tls.tls and Settings.from_json(tls.to_json()) == tls
    with pytest.raises(SettingsError, match="VISAGE_TLS_CERT and VISAGE_TLS_KEY"):
        Settings(tls_cert=Path("cert.pem"))


def test_environment_then_overrides():
    env = {
        "VISAGE_MAX_IMAGE_BYTES": "1000",
        "VISAGE_DETECTION_THRESHOLD": "0.5",
        "VISAGE_AUTH": "false",
        "VISAGE_S3_ROOT": "/srv/s3",
        "VISAGE_LANDMARKS": "yunet5",
        "VISAGE_DATA_DIR": "from-env",
        "OTHER": "ignored",
    }
    settings = Settings.from_env(env, data_dir=Path("from-flag"), store=None)
    assert settings.max_image_bytes == 1000
    assert settings.detection_threshold == 0.5
    assert settings.auth is False
    assert settings.s3_root == Path("/srv/s3")
    assert settings.landmarks == "yunet5"
    assert settings.data_dir == Path("from-flag")  # a flag wins; a None flag is no flag
    assert settings.store is None
    assert Settings.from_env({"VISAGE_AUTH": "1"}).auth is True


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("VISAGE_MAX_IMAGE_BYTES", "abc", "a whole number of at least 1"),
        ("VISAGE_MAX_IMAGE_BYTES", "0", "a whole number of at least 1"),
        ("VISAGE_EXACT_SEARCH_LIMIT", "-1", "a whole number of at least 0"),
        ("VISAGE_DETECTION_THRESHOLD", "1.5", "a number between 0 and 1"),
        ("VISAGE_LANDMARKS", "foo", "one of dlib68, yunet5"),
        ("VISAGE_FACE_MODEL", "arcface", "one of sface, dlib, sface-crops, fusion"),
        ("VISAGE_AUTH", "maybe", "true or false"),
    ],
)
def test_bad_value_names_the_variable_and_what_is_allowed(variable: str, value: str, allowed: str):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert str(caught.value).startswith(f"{variable} ({variable[7:].lower()}) must be {allowed}")
    assert repr(value) in str(caught.value) or value in str(caught.value)


def test_values_are_checked_however_settings_are_built():
    with pytest.raises(SettingsError, match="VISAGE_THREADS"):
        Settings(threads=0)
    with pytest.raises(SettingsError, match="VISAGE_LANDMARKS"):
        Settings.from_env({}, landmarks="dlib5")


def test_a_bad_store_url_is_not_echoed():
    with pytest.raises(SettingsError, match=r"VISAGE_STORE .* postgresql:// URL") as caught:
        Settings.from_env({"VISAGE_STORE": "mysql://visage:hunter2@db/visage"})
    assert "hunter2" not in str(caught.value)
    assert Settings(store="postgresql://visage@db/visage").postgres_url == "postgresql://visage@db/visage"
    assert Settings(store="sqlite").postgres_url is None


def test_json_round_trip():
    settings = Settings(
        data_dir=Path("/srv/visage"),
        s3_root=Path("/srv/s3"),
        auth=False,
        threads=3,
        store="postgresql://visage@db/visage",
        detection_threshold=0.6,
    )
    assert Settings.from_json(settings.to_json()) == settings
    assert Settings.from_json(Settings().to_json()) == Settings()


# The real command line --------------------------------------------------------------------


def visage(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_visage(*args, env=env, cwd=cwd, timeout=300)


def one_error_line(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


COMMANDS = [
    ("detect", "face.jpg"),
    ("compare", "face.jpg", "face.jpg"),
    ("serve", "--port", "9"),
    ("keys", "create"),
    ("keys", "list"),
    ("audit-log",),
    ("index", "images", "--collection", "c"),
    ("eval", "lfw", "--limit", "1", "--out", "out"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_every_command_reports_a_bad_variable_in_one_line(command: tuple[str, ...], tmp_path: Path):
    (tmp_path / "images").mkdir()
    status = 2 if command[0] == "compare" else 1  # compare's 1 means "no match"
    line = one_error_line(visage(*command, env={"VISAGE_MAX_IMAGE_BYTES": "abc"}, cwd=tmp_path), status)
    assert line == "error: VISAGE_MAX_IMAGE_BYTES (max_image_bytes) must be a whole number of at least 1, not 'abc'."
    assert not (tmp_path / "visage-data").exists()  # it stopped before doing anything


def test_a_bad_choice_lists_the_choices(tmp_path: Path):
    line = one_error_line(visage("detect", "face.jpg", env={"VISAGE_LANDMARKS": "foo"}, cwd=tmp_path))
    assert line == "error: VISAGE_LANDMARKS (landmarks) must be one of dlib68, yunet5, not 'foo'."


def test_a_bad_store_flag_is_one_line_without_the_url(tmp_path: Path):
    line = one_error_line(visage("serve", "--store", "mysql://visage:hunter2@db/visage", env={}, cwd=tmp_path))
    assert "VISAGE_STORE" in line and "hunter2" not in line


def test_data_dir_comes_from_the_flag_then_the_environment(tmp_path: Path):
    created = visage("keys", "create", env={"VISAGE_DATA_DIR": str(tmp_path / "env")}, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "env" / "visage.db").exists() and (tmp_path / "env" / "secret.key").exists()
    key_id = created.stdout.split()[0].removeprefix("AWS_ACCESS_KEY_ID=")
    listed = visage(
        "keys",
        "list",
        "--json",
        "--data-dir",
        str(tmp_path / "env"),
        env={"VISAGE_DATA_DIR": "elsewhere"},
        cwd=tmp_path,
    )
    assert [json.loads(line)["access_key_id"] for line in listed.stdout.splitlines()] == [key_id]
    assert not (tmp_path / "elsewhere").exists()


def test_no_auth_only_on_loopback(tmp_path: Path):
    for env, flags in (({}, ("--no-auth",)), ({"VISAGE_AUTH": "0"}, ())):
        result = visage("serve", "--host", "0.0.0.0", *flags, env=env, cwd=tmp_path)
        assert result.returncode == 2 and "only allowed on a loopback address" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_no_auth_server_takes_unsigned_requests(workers: str, tmp_path: Path):
    """The settings reach the app: handed over in-process, or as JSON to each worker process."""
    with RunningServer(tmp_path / "data", extra_args=("--no-auth", "--workers", workers)) as server:
        response = httpx.post(
            server.url + "/",
            content=b"{}",
            timeout=60,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "RekognitionService.ListCollections",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["CollectionIds"] == []
