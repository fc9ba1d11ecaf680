"""CITATION.cff is valid Citation File Format 1.2.0 and says what the rest of the repository says.

The schema is the official one, ``https://citation-file-format.github.io/1.2.0/schema.json``,
copied byte for byte into ``tests/data/cff-1.2.0.schema.json`` from the wheel of
``cffconvert`` 2.0.0 (the Citation File Format project's own validator, which ships it as
``cffconvert/schemas/1.2.0/schema.json``). ``cffconvert`` itself cannot be installed beside
the book's tools: it requires ``jsonschema<4`` and jupyter-server needs ``jsonschema>=4.18``.
So ``jsonschema`` validates, with format checking (dates, URLs), as ``cffconvert`` would.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "tests" / "data" / "cff-1.2.0.schema.json"
SCHEMA_SHA256 = "0b8d22140da702d766df318dcff3a91af2f39521298dcf36d76315fd99cc169b"


class CffLoader(yaml.SafeLoader):
    """YAML as CFF tools read it: an unquoted date stays a string (the schema wants one)."""


CffLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def citation() -> dict:
    return yaml.load((ROOT / "CITATION.cff").read_text(encoding="utf-8"), Loader=CffLoader)


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def errors(document: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator().iter_errors(document)
    ]


def myst_project() -> dict:
    return yaml.safe_load((ROOT / "myst.yml").read_text(encoding="utf-8"))["project"]


def test_schema_is_the_official_copy() -> None:
    data = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, (
        "tests/data/cff-1.2.0.schema.json was changed"
    )
    assert json.loads(data)["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"


def test_citation_file_is_valid_cff() -> None:
    document = citation()
    assert document["cff-version"] == "1.2.0"
    assert errors(document) == []


@pytest.mark.parametrize(
    "breakage",
    ["no authors", "unknown key", "bad date", "bad licence", "bad url", "old version"],
)
def test_validator_rejects_a_broken_copy(breakage: str) -> None:
    """The validation is not vacuous: each of these mistakes is caught."""
    document = copy.deepcopy(citation())
    if breakage == "no authors":
        del document["authors"]
    elif breakage == "unknown key":
        document["autors"] = document["authors"]
    elif breakage == "bad date":
        document["date-released"] = "2026-13-01"
    elif breakage == "bad licence":
        document["license"] = "MIT-or-whatever"
    elif breakage == "bad url":
        document["repository-code"] = "github.com/no-scheme"
    elif breakage == "old version":
        document["cff-version"] = "1.1.0"
    assert errors(document) != [], f"{breakage}: the schema accepted it"


def test_version_is_the_package_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert str(citation()["version"]) == project["version"]


def test_agrees_with_myst_yml() -> None:
    """Title, authors, licences and repository are the book's own (myst.yml)."""
    document, project = citation(), myst_project()
    assert document["title"] == project["title"]
    assert [a.get("name") for a in document["authors"]] == [a["name"] for a in project["authors"]]
    assert document["license"] == [project["license"]["code"], project["license"]["content"]]
    assert document["repository-code"] == project["github"]
