"""The trust policy file: scope matching, collection naming rules, and refusals naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tufnotary.client.errors import UsageError
from tufnotary.client.reference import parse_reference
from tufnotary.client.trustpolicy import load_trust_policy

POLICY = """
[[scope]]
registry = "*"
collection = "any/{repository}"

[[scope]]
registry = "dev.example.com/team/*"
collection = "acme/{path}"
root = "roots/acme.json"

[[scope]]
registry = "prod.example.com/*"
collection = "acme/{path}"
server = "https://notary.example.com"
root-sha256 = "%s"
require-roles = ["targets/prod"]
deny-algorithms = ["rsa<3072"]

[[scope]]
registry = "prod.example.com/special/web"
collection = "special/{name}"
""" % ("ab" * 32)


def test_most_specific_scope_and_host_independent_collections(tmp_path: Path) -> None:
    path = tmp_path / "trust-policy.toml"
    path.write_text(POLICY)
    policy = load_trust_policy(path)
    dev = parse_reference("dev.example.com/team/web:1abc")
    prod = parse_reference("prod.example.com/web:1abc")
    dev_scope, prod_scope = policy.match(dev), policy.match(prod)
    assert dev_scope is not None and prod_scope is not None
    assert dev_scope.collection_for(dev) == prod_scope.collection_for(prod) == "acme/web"
    assert dev_scope.root == (tmp_path / "roots" / "acme.json").resolve()
    assert prod_scope.require_roles == ("targets/prod",) and prod_scope.server == "https://notary.example.com"
    assert str(prod_scope.deny.deny[0]) == "rsa<3072"
    special = parse_reference("prod.example.com/special/web:2")
    assert policy.match(special).collection_for(special) == "special/web"  # type: ignore[union-attr]
    other = parse_reference("elsewhere.io/x/y:1")
    assert policy.match(other).collection_for(other) == "any/x/y"  # type: ignore[union-attr]


def test_missing_file_is_empty_unless_required(tmp_path: Path) -> None:
    assert load_trust_policy(tmp_path / "none.toml").match(parse_reference("r.io/a")) is None
    with pytest.raises(UsageError, match="does not exist"):
        load_trust_policy(tmp_path / "none.toml", required=True)


@pytest.mark.parametrize("body,phrase", [
    ('[[scope]]\nregistry = "r.io/a*"\n', "registry must be"),
    ('[[scope]]\nregistry = "r.io/*"\nroot = "a"\nroot-sha256 = "%s"\n' % ("0" * 64), "not both"),
    ('[[scope]]\nregistry = "r.io/*"\nroot-sha256 = "xyz"\n', "64 hex"),
    ('[[scope]]\nregistry = "r.io/*"\ncolection = "a"\n', "unknown settings colection"),
    ('[[scope]]\nregistry = "r.io/*"\ncollection = "{host}/x"\n', "only {repository}"),
    ('[[scope]]\nregistry = "r.io/*"\ntrust-on-first-use = "yes"\n', "true or false"),
    ('scopes = 1\n', "unknown settings scopes"),
])
def test_invalid_policies_name_the_setting(tmp_path: Path, body: str, phrase: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(UsageError, match=phrase.replace("{", r"\{").replace("}", r"\}")):
        load_trust_policy(path)


def test_collection_rule_must_give_a_valid_name(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[scope]]\nregistry = "r.io/*"\ncollection = "Bad_{path}"\n')
    ref = parse_reference("r.io/web:1")
    with pytest.raises(UsageError, match="collection rule"):
        load_trust_policy(path).match(ref).collection_for(ref)  # type: ignore[union-attr]
