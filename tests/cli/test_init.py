"""``warrantor init``: a data directory with keys, a migrated database and a first tenant whose
keys work; a second run, a directory ``serve`` already used, or a used database is refused
without showing or changing a key."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from warrantor.cli.main import main as cli
from warrantor.domain.model import Role
from warrantor.server.app import open_services
from warrantor.server.settings import Settings


def _init(capsys: Any, *args: str) -> tuple[int, str, str]:
    code = cli(["init", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _authenticate(data_dir: Path, *keys: str, database_url: str | None = None) -> list[Any]:
    services = open_services(Settings(data_dir=data_dir, database_url=database_url))
    try:
        return [services.tenancy.authenticate(key) for key in keys]
    finally:
        services.store.close()


def _snapshot(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*"))
            if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm") and "wal" not in p.name}


def test_init_creates_keys_a_database_and_a_tenant_whose_keys_work(tmp_path: Path, capsys: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARRANTOR_OPERATOR_KEY", raising=False)
    data_dir = tmp_path / "wr"
    code, out, _ = _init(capsys, "--data-dir", str(data_dir), "--tenant", "Acme", "--agent", "payments-agent",
                         "--json")
    assert code == 0
    result = json.loads(out)
    assert result["ok"] is True and result["shown_once"] is True
    assert result["tenant"]["name"] == "Acme"
    assert result["agent_key"]["agent_id"] == "payments-agent"
    # the files a server needs, private
    assert (data_dir / "warrantor.db").is_file()
    pem = data_dir / "keys" / "signing" / f"{result['signing_key_id']}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert (data_dir / "operator.key").read_text().strip() == result["operator_key"]
    # the marker records ids, never a secret
    marker = (data_dir / "init.json").read_text()
    assert stat.S_IMODE((data_dir / "init.json").stat().st_mode) == 0o600
    for secret in (result["admin_key"]["key"], result["agent_key"]["key"], result["operator_key"]):
        assert secret.startswith("wrt_") and secret not in marker
    assert json.loads(marker)["tenant_id"] == result["tenant"]["tenant_id"]
    # the keys are real: the server's own authentication accepts them with their roles
    admin, agent, operator = _authenticate(data_dir, result["admin_key"]["key"], result["agent_key"]["key"],
                                           result["operator_key"])
    assert (admin.role, admin.tenant_id) == (Role.ADMIN, result["tenant"]["tenant_id"])
    assert (agent.role, agent.tenant_id, agent.agent_id) == (Role.AGENT, result["tenant"]["tenant_id"],
                                                             "payments-agent")
    assert operator.is_operator and operator.tenant_id is None


def test_the_human_output_shows_each_key_once_and_says_so(tmp_path: Path, capsys: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARRANTOR_OPERATOR_KEY", raising=False)
    code, out, err = _init(capsys, "--data-dir", str(tmp_path / "wr"))
    assert code == 0
    marker = json.loads((tmp_path / "wr" / "init.json").read_text())
    keys = [line.split()[2] for line in out.splitlines() if line.strip().startswith(("admin key", "agent key"))]
    assert len(keys) == 2 and all(k.startswith("wrt_") and out.count(k) == 1 for k in keys)
    assert "shown ONCE" in out
    assert "bound to agent 'agent'" in out  # the default agent id
    assert marker["tenant_name"] == "Default"
    assert err == ""  # stderr is not a terminal here: no progress bar


def test_a_second_run_is_refused_and_shows_and_changes_no_key(tmp_path: Path, capsys: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARRANTOR_OPERATOR_KEY", raising=False)
    data_dir = tmp_path / "wr"
    code, out, _ = _init(capsys, "--data-dir", str(data_dir), "--json")
    assert code == 0
    first = json.loads(out)
    before = _snapshot(data_dir)

    code, out, err = _init(capsys, "--data-dir", str(data_dir))
    assert code == 1
    assert "already initialized" in err and first["tenant"]["tenant_id"] in err
    code, out_json, _ = _init(capsys, "--data-dir", str(data_dir), "--json")
    assert code == 1
    refused = json.loads(out_json)
    assert (refused["ok"], refused["code"]) == (False, "ALREADY_INITIALIZED")
    assert "already initialized" in refused["message"]
    for text in (out, err, out_json):
        assert "wrt_" not in text  # no key of any kind, old or new
    assert _snapshot(data_dir) == before  # keys, marker, operator key untouched
    services = open_services(Settings(data_dir=data_dir))
    try:
        keys = services.tenancy.list_api_keys(first["tenant"]["tenant_id"])
    finally:
        services.store.close()
    assert sorted(k.id for k in keys) == sorted([first["admin_key"]["key_id"], first["agent_key"]["key_id"]])


def test_a_directory_a_server_already_uses_is_refused(tmp_path: Path, capsys: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARRANTOR_OPERATOR_KEY", raising=False)
    data_dir = tmp_path / "served"
    open_services(Settings(data_dir=data_dir)).store.close()  # what `warrantor serve` leaves behind
    code, out, _ = _init(capsys, "--data-dir", str(data_dir), "--json")
    assert code == 1
    assert json.loads(out)["code"] == "DATA_DIR_IN_USE"
    assert not (data_dir / "init.json").exists()


def test_an_unfinished_init_is_refused_with_a_way_out(tmp_path: Path, capsys: Any) -> None:
    data_dir = tmp_path / "wr"
    data_dir.mkdir()
    (data_dir / "init.json").write_text('{"status": "initializing"}\n')  # another init holds the directory
    code, _, err = _init(capsys, "--data-dir", str(data_dir))
    assert code == 1
    assert "did not finish" in err and "remove the directory" in err
    assert not (data_dir / "warrantor.db").exists()


@pytest.mark.parametrize(("flag", "value"), [("--agent", "bad agent"), ("--agent", ""), ("--tenant", "")])
def test_bad_names_are_usage_errors_and_create_nothing(tmp_path: Path, capsys: Any, flag: str, value: str) -> None:
    data_dir = tmp_path / "wr"
    code, out, err = _init(capsys, "--data-dir", str(data_dir), flag, value, "--json")
    assert code == 2
    assert json.loads(out)["code"] == "USAGE" and flag in err
    assert not data_dir.exists()


@pytest.mark.postgres
def test_a_postgresql_database_is_initialized_once(tmp_path: Path, capsys: Any, pg_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARRANTOR_OPERATOR_KEY", raising=False)
    code, out, _ = _init(capsys, "--data-dir", str(tmp_path / "a"), "--database-url", pg_url, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["database"] == "postgresql" and not (tmp_path / "a" / "warrantor.db").exists()
    (admin,) = _authenticate(tmp_path / "a", result["admin_key"]["key"], database_url=pg_url)
    assert admin.role is Role.ADMIN
    # the same database from a fresh directory: refused before any key is made
    code, out, _ = _init(capsys, "--data-dir", str(tmp_path / "b"), "--database-url", pg_url, "--json")
    assert code == 1
    assert json.loads(out)["code"] == "DATABASE_IN_USE"
    assert not (tmp_path / "b" / "keys").exists() and not (tmp_path / "b" / "init.json").exists()
    assert os.listdir(tmp_path / "b") == []
