"""``warrantor policy validate DIR``: the checks an upload runs, each problem at its file, line
and column (several .cedar files are one text to Cedar), exit 0 / 1 / 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from support import Env
from warrantor.cli.bundle_dir import read_bundle_dir
from warrantor.cli.main import main as cli
from warrantor.service.authorization.policies import compile_upload

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy" / "payments"


def _validate(capsys: Any, path: Path, *flags: str) -> tuple[int, str, str]:
    code = cli(["policy", "validate", str(path), *flags])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(EXAMPLE, copy)
    return copy


def _position(path: Path, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``path``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in {path}")


def test_the_example_bundle_is_valid_and_each_policy_is_at_its_file_and_line(capsys: Any) -> None:
    code, out, err = _validate(capsys, EXAMPLE)
    assert code == 0, out
    assert err == ""
    line, _ = _position(EXAMPLE / "wires.cedar", '@id("wire-approval-50k")')
    assert f"wires.cedar:{line}" in out and "wire-approval-50k" in out
    code, out, _ = _validate(capsys, EXAMPLE, "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] is True and result["problems"] == []
    where = {p["id"]: (Path(p["file"]).name, p["line"]) for p in result["policies"]}
    assert where["wire-approval-50k"] == ("wires.cedar", line)
    assert where["email-external"] == ("email.cedar", _position(EXAMPLE / "email.cedar", '@id("email')[0])
    # the hash is the one the server gives the same files
    assert result["bundle_hash"] == compile_upload(read_bundle_dir(EXAMPLE).raw).bundle.hash
    assert result["approvers"] == ["comms-reviewers", "finance-leads"]


def test_a_syntax_error_in_the_fourth_file_is_reported_at_its_own_line_and_column(bundle: Path,
                                                                                 capsys: Any) -> None:
    wires = bundle / "wires.cedar"
    wires.write_text(wires.read_text().replace("amount_minor > 5000000 }", "amount_minor > 5000000 ]"))
    line, column = _position(wires, "]")
    code, out, _ = _validate(capsys, bundle)
    assert code == 1
    assert f"{wires}:{line}:{column}: cedar: unbalanced ']'" in out
    code, out, _ = _validate(capsys, bundle, "--json")
    (problem,) = json.loads(out)["problems"]
    assert (problem["file"], problem["line"], problem["column"]) == (str(wires), line, column)
    # in the text Cedar sees, the three files before it come first
    earlier = sum(len(p.read_text().splitlines()) for p in sorted(bundle.glob("*.cedar")) if p.name < "wires.cedar")
    assert problem["bundle_line"] == earlier + line


def test_a_schema_validation_error_names_the_policy_and_its_file(bundle: Path, capsys: Any) -> None:
    email = bundle / "email.cedar"
    email.write_text(email.read_text().replace('context.payload.to like "*;*"', 'context.payload.too like "*;*"'))
    line, _ = _position(email, '@id("email-external")')
    code, out, _ = _validate(capsys, bundle)
    assert code == 1
    assert f"{email}:{line}:1: cedar: schema validation:" in out
    assert "payload.too" in out and "[policy email-external]" in out


def test_config_problems_point_into_warrantor_yaml(bundle: Path, capsys: Any) -> None:
    config = bundle / "warrantor.yaml"
    config.write_text("approvals: &a\n  default_ttl_seconds: 5\nagents: *a\n")
    code, out, _ = _validate(capsys, bundle)
    assert code == 1
    assert f"{config}:1:12: config: YAML anchors and aliases are not supported" in out
    assert "(YAML_ALIAS_REFUSED)" in out
    config.write_text("approvals:\n  default_ttl_seconds: [5\n")
    code, out, _ = _validate(capsys, bundle)
    assert code == 1 and f"{config}:3:1: config: invalid YAML" in out
    config.write_text("budgets:\n  - {id: b, metric: count, scope: galaxy, window: 1d, limit: 1, on_exceed: deny}\n")
    code, out, _ = _validate(capsys, bundle)
    assert code == 1 and f"{config}: config: budgets" in out


def test_a_hostile_bundle_is_a_problem_not_a_crash(bundle: Path, capsys: Any) -> None:
    # deep nesting crashes cedarpy's native parser; the same limits as upload stop it first
    (bundle / "wires.cedar").write_text(
        '@id("deep") @reason("X")\npermit (principal, action, resource) when { '
        + "(" * 5000 + "true" + ")" * 5000 + " };\n")
    code, out, _ = _validate(capsys, bundle, "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert problems and problems[0]["code"] == "POLICY_TOO_COMPLEX"
    assert problems[0]["file"] == str(bundle / "wires.cedar") and problems[0]["line"] == 2


def test_the_same_problems_as_an_upload_to_the_server(bundle: Path, env: Env, capsys: Any) -> None:
    wires = bundle / "wires.cedar"
    wires.write_text(wires.read_text().replace('@reason("AMOUNT_CAP")', "").replace(
        'context.payload.currency != "EUR"', "context.payload.currency != 42"))
    (bundle / "warrantor.yaml").write_text("approvals:\n  default_ttl_seconds: 0\n")
    code, out, _ = _validate(capsys, bundle, "--json")
    assert code == 1
    ours = [(p["message"], p.get("bundle_line"), p.get("bundle_column")) for p in json.loads(out)["problems"]]
    r = env.client.post("/v1/policies", json=read_bundle_dir(bundle).raw, headers=env.h("admin"))
    assert r.status_code == 422, r.text
    theirs = [(p["message"], p.get("line"), p.get("column")) for p in r.json()["details"]["problems"]]
    assert len(ours) >= 3 and ours == theirs


def test_a_single_file_is_sent_byte_for_byte(tmp_path: Path, capsys: Any) -> None:
    one = tmp_path / "one"
    one.mkdir()
    cedar = '@id("all") @reason("OK")\npermit (principal, action, resource);'  # no final newline
    (one / "p.cedar").write_text(cedar)
    shutil.copy(EXAMPLE / "payments.cedarschema", one / "s.cedarschema")
    code, out, _ = _validate(capsys, one, "--json")
    assert code == 0, out
    assert read_bundle_dir(one).raw == {"cedar": cedar, "schema": (EXAMPLE / "payments.cedarschema").read_text(),
                                        "config": {}}


@pytest.mark.parametrize(("layout", "message"), [
    ({"a.cedar": "x"}, "expected exactly one *.cedarschema file, found none"),
    ({"a.cedar": "x", "one.cedarschema": "", "two.cedarschema": ""}, "found one.cedarschema, two.cedarschema"),
    ({"s.cedarschema": ""}, "expected at least one *.cedar policy file"),
    ({"a.cedar": b"\xff\xfe", "s.cedarschema": ""}, "expected UTF-8 text"),
])
def test_layout_problems_are_problems(tmp_path: Path, capsys: Any, layout: dict[str, Any], message: str) -> None:
    for name, content in layout.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, _ = _validate(capsys, tmp_path)
    assert code == 1 and message in out


def test_usage_errors_exit_2(tmp_path: Path, capsys: Any) -> None:
    code, out, err = _validate(capsys, tmp_path / "missing")
    assert code == 2 and "expected a bundle directory" in err and out == ""
    code, out, _ = _validate(capsys, tmp_path / "missing", "--json")
    assert code == 2 and json.loads(out)["ok"] is False
    with pytest.raises(SystemExit) as exc:
        cli(["policy", "validate"])
    assert exc.value.code == 2
