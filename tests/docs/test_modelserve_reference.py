"""docs/modelserve-reference.md is what `crd_reference` makes of the CRD, to the byte."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

from modelserve.testbed.crd_reference import COMMAND, code, load_crd, render

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "modelserve-reference.md"


def test_the_reference_is_up_to_date_with_the_crd() -> None:
    assert REFERENCE.read_text() == render(load_crd()), f"out of date: run `{COMMAND}`"


def test_the_documented_command_prints_the_reference() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "modelserve.testbed.crd_reference"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == REFERENCE.read_text()


def test_every_field_of_the_schema_has_a_row() -> None:
    crd = load_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def paths(node: dict[str, object], path: str) -> list[str]:
        found = [path]
        items = node.get("items")
        if node.get("type") == "array" and isinstance(items, dict) and "properties" in items:
            node, path = items, f"{path}[]"
        properties = node.get("properties", {})
        assert isinstance(properties, dict)
        for name, child in properties.items():
            found += paths(child, f"{path}.{name}")
        return found

    expected = paths(schema["properties"]["spec"], "spec")[1:]
    expected += paths(schema["properties"]["status"], "status")[1:]
    text = REFERENCE.read_text()
    assert "spec.scaling.stepDelimiter" in expected and "status.conditions[].type" in expected
    assert [path for path in expected if f"| `{path}` |" not in text] == []
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        assert f"| `{column['name']}` |" in text


def test_a_changed_crd_changes_the_reference() -> None:
    crd = load_crd()
    changed = copy.deepcopy(crd)
    spec = changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["replicas"]["default"] = 2
    assert render(changed) != render(crd)
    assert "| `spec.replicas` | integer |  | `2` |" in render(changed)


def test_every_cel_rule_of_the_crd_is_listed() -> None:
    """Rules on a list's items too (an adapter's name): the reference lists every rule
    the API server enforces."""
    crd_rules = _all_rules(load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    reference = REFERENCE.read_text()
    assert len(crd_rules) >= 30
    assert [rule for rule in crd_rules if code(rule) not in reference] == []


def _all_rules(node: object) -> list[str]:
    """The `rule` of every x-kubernetes-validations entry anywhere under `node`."""
    if isinstance(node, list):
        return [rule for value in node for rule in _all_rules(value)]
    if not isinstance(node, dict):
        return []
    own = [entry["rule"] for entry in node.get("x-kubernetes-validations", [])]
    return own + [rule for value in node.values() for rule in _all_rules(value)]
