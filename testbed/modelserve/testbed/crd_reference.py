"""The ModelServe reference (docs/modelserve-reference.md), generated from the CRD.

    python -m modelserve.testbed.crd_reference > docs/modelserve-reference.md

The CRD in crds/ is the one source of truth; tests/docs/test_modelserve_reference.py fails
when the committed document differs from what this prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from modelserve.testbed.cache import repo_root

CRD_PATH = Path("crds") / "modelserves.llm.modelserve.io.yaml"
COMMAND = "python -m modelserve.testbed.crd_reference > docs/modelserve-reference.md"


def load_crd(path: Path | None = None) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((path or repo_root() / CRD_PATH).read_text())
    return crd


def cell(text: str) -> str:
    """`text` fit for one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def code(text: str) -> str:
    return f"`{cell(text)}`"


def type_of(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return kind


def constraints(schema: dict[str, Any]) -> list[str]:
    """What the API server checks about one field's value, in words."""
    found: list[str] = []
    if "enum" in schema:
        found.append("one of " + ", ".join(code(str(value)) for value in schema["enum"]))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        found.append(f"{'>' if schema.get('exclusiveMinimum') else '≥'} {low}")
    if high is not None:
        found.append(f"{'<' if schema.get('exclusiveMaximum') else '≤'} {high}")
    if schema.get("minLength") == 1:
        found.append("not empty")
    elif "minLength" in schema:
        found.append(f"at least {schema['minLength']} characters")
    if "maxLength" in schema:
        found.append(f"at most {schema['maxLength']} characters")
    if "maxItems" in schema:
        found.append(f"at most {schema['maxItems']} items")
    if "pattern" in schema:
        found.append(f"matches {code(schema['pattern'])}")
    keys = schema.get("x-kubernetes-list-map-keys")
    if keys:
        found.append("unique by " + ", ".join(code(key) for key in keys))
    return found


def fields(schema: dict[str, Any], path: str, required: bool) -> Iterator[list[str]]:
    """One table row per field under `schema` (depth first, in the CRD's order)."""
    default = code(json.dumps(schema["default"])) if "default" in schema else ""
    yield [
        code(path),
        type_of(schema),
        "yes" if required else "",
        default,
        "; ".join(constraints(schema)),
        cell(str(schema.get("description", ""))),
    ]
    if schema.get("type") == "array" and schema.get("items", {}).get("type") == "object":
        schema = schema["items"]
        path = f"{path}[]"
    for name, child in schema.get("properties", {}).items():
        yield from fields(child, f"{path}.{name}", name in schema.get("required", []))


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def rules(schema: dict[str, Any], path: str) -> Iterator[list[str]]:
    """The CEL rules (x-kubernetes-validations) anywhere in `schema`."""
    for rule in schema.get("x-kubernetes-validations", []):
        where = path + rule.get("fieldPath", "")
        yield [code(where) if where else "the object", code(rule["rule"]), cell(rule["message"])]
    for name, child in schema.get("properties", {}).items():
        yield from rules(child, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, dict):  # the rules of each item of a list
        yield from rules(items, f"{path}[]")


def render(crd: dict[str, Any]) -> str:
    spec = crd["spec"]
    names = spec["names"]
    (version,) = [item for item in spec["versions"] if item.get("storage")]
    schema = version["schema"]["openAPIV3Schema"]
    lines = [
        f"# {names['kind']} reference",
        "",
        f"<!-- Generated from {CRD_PATH.as_posix()} by `{COMMAND}`;",
        "     do not edit by hand: tests/docs/test_modelserve_reference.py compares them. -->",
        "",
        f"`apiVersion: {spec['group']}/{version['name']}`, `kind: {names['kind']}`: "
        f"{spec['scope'].lower()}, plural `{names['plural']}`, short name"
        f" {', '.join(code(short) for short in names.get('shortNames', []))}, "
        f"categories {', '.join(code(c) for c in names.get('categories', []))}.",
        "",
        cell(schema["description"]),
        "",
        "`kubectl explain ms.spec` prints the same descriptions from the cluster. Examples are in",
        "[examples/](examples/); what the operator makes of each runtime is in",
        "[operator.md](operator.md).",
        "",
        "## `kubectl get ms` columns",
        "",
    ]
    columns = [
        [
            code(column["name"]),
            column["type"],
            code(column["jsonPath"]),
            column.get("description", ""),
        ]
        for column in version.get("additionalPrinterColumns", [])
    ]
    lines += table(["column", "type", "JSON path", "description"], columns)
    lines += ["", "## Subresources", ""]
    subresources = version.get("subresources", {})
    if "status" in subresources:
        lines.append(
            "- `status`: a subresource of its own, written by the operator only;"
            " `kubectl apply` and `edit` do not change it."
        )
    scale = subresources.get("scale")
    if scale:
        lines.append(
            "- `scale`: `kubectl scale ms/NAME --replicas=N` sets"
            f" {code(scale['specReplicasPath'])} and reads {code(scale['statusReplicasPath'])} and"
            f" {code(scale.get('labelSelectorPath', ''))}."
        )
    for part in ("spec", "status"):
        part_schema = schema["properties"][part]
        lines += ["", f"## `{part}`", "", cell(part_schema.get("description", "")), ""]
        rows = [
            row
            for name, child in part_schema.get("properties", {}).items()
            for row in fields(child, f"{part}.{name}", name in part_schema.get("required", []))
        ]
        lines += table(
            ["field", "type", "required", "default", "allowed values", "description"], rows
        )
    lines += [
        "",
        "## Rules across fields",
        "",
        "The API server refuses a ModelServe that breaks one of these rules, with the message.",
        "",
    ]
    lines += table(["field", "rule (CEL)", "message"], list(rules(schema, "")))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m modelserve.testbed.crd_reference", description=__doc__.split("\n")[0]
    )
    parser.add_argument("crd", nargs="?", type=Path, help=f"the CRD file (default: {CRD_PATH})")
    args = parser.parse_args(argv)
    sys.stdout.write(render(load_crd(args.crd)))


if __name__ == "__main__":
    main()
