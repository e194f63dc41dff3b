"""Mutation check of the pure modules that carry the platform's guarantees, with mutmut.

    .venv/bin/python bench/mutation.py                 # every target
    .venv/bin/python bench/mutation.py routing policy  # some targets
    .venv/bin/python bench/mutation.py --timeout 300 --max-children 1 builders

For each target (policy, routing, scaling, builders, eviction) mutmut changes the target's
modules one small edit at a time (a `<` made `<=`, a constant changed, a call's argument
dropped, ...) and runs the fast unit tests named beside the target against every mutant. A
mutant the tests still pass on ("survived") is a change to the code that no test notices.
The script prints, per target: mutants, killed, survived, timeouts (mutmut's own per-mutant
limit) and not checked (left when the target's time ran out), then every survivor as
file:line and the mutation.

Why the copy: mutmut 3 derives a module's name from its path under the folder it mutates
(`src/` stripped), and runs the tests with `mutants/` in front of `sys.path`. This
repository keeps one `modelserve` namespace package in several source roots (common/,
operator/, services/*/, ...), so each target runs in a temporary folder that holds every
root merged into `src/modelserve/` plus a copy of tests/. Nothing is written into the
checkout; the temporary folder is removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = (
    "common",
    "operator",
    "services/gateway",
    "services/contract",
    "services/download",
    "services/nodeagent",
    "services/jobs",
    "testbed",
    "client",
)
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules")


@dataclasses.dataclass(frozen=True)
class Target:
    """Modules to mutate (paths in the repository) and the unit tests that guard them."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]


TARGETS: dict[str, Target] = {
    "policy": Target(
        modules=(
            "services/contract/modelserve/contract/policy.py",
            "services/contract/modelserve/contract/decisions.py",
        ),
        tests=("tests/contract/test_policy.py", "tests/contract/test_mutants_policy.py"),
    ),
    "routing": Target(
        modules=(
            "services/gateway/modelserve/gateway/routing.py",
            "services/gateway/modelserve/gateway/balancing.py",
        ),
        tests=(
            "tests/gateway/test_routing.py",
            "tests/gateway/test_balancing.py",
            "tests/gateway/test_loading_states.py",
            "tests/gateway/test_loading_pod_drain.py",
            "tests/gateway/test_holding.py",
            "tests/gateway/test_dispatch.py",
            "tests/gateway/test_endpoints.py",
            "tests/gateway/test_registry_activation.py",
            "tests/gateway/test_mutants_routing.py",
        ),
    ),
    "scaling": Target(
        modules=tuple(
            f"services/gateway/modelserve/gateway/scaling/{name}.py"
            # The algorithms and their rewards. The HTTP adapters (openai_lm, reward_model,
            # with lm and concurrency: 556 mutants, mostly request and answer shapes) are
            # left out to keep the run within its bound; their own tests check them.
            for name in ("algorithms", "results", "rewards", "sampling", "steps", "stepwise")
        ),
        tests=(
            "tests/gateway/test_scaling_algorithms.py",
            "tests/gateway/test_scaling_openai_lm.py",
            "tests/gateway/test_scaling_rewards.py",
            "tests/gateway/test_mutants_scaling.py",
        ),
    ),
    "builders": Target(
        modules=(
            "operator/modelserve/operator/builders.py",
            "operator/modelserve/operator/runtimes.py",
        ),
        tests=("tests/operator/test_builders.py", "tests/operator/test_mutants_builders.py"),
    ),
    "eviction": Target(
        modules=("operator/modelserve/operator/autoscaling/decisions.py",),
        tests=(
            "tests/operator/test_autoscaling_decisions.py",
            "tests/operator/test_mutants_eviction.py",
        ),
    ),
}

# Only the tests that need none of the test bed's processes: they run once per mutant.
FAST = "not kube and not postgres and not minio and not llm"


def copy_tree(work: Path) -> None:
    """Every source root merged into work/src/modelserve, and tests/ beside it."""
    for root in SOURCE_ROOTS:
        shutil.copytree(
            REPO / root / "modelserve",
            work / "src" / "modelserve",
            ignore=IGNORED,
            dirs_exist_ok=True,
        )
    shutil.copytree(REPO / "tests", work / "tests", ignore=IGNORED)


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def write_config(work: Path, target: Target) -> None:
    """mutmut's settings and the repository's pytest markers, in the copy's pyproject."""
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"
    ]
    mutated = [mutated_path(module) for module in target.modules]
    tests = [test for test in target.tests if (REPO / test).exists()]
    lines = [
        "[tool.mutmut]",
        'source_paths = ["src"]',
        f"only_mutate = {toml_list(mutated)}",
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}",
        f"pytest_add_cli_args = {toml_list(['-p', 'no:cacheprovider', '-q', '-m', FAST])}",
        "",
        "[tool.pytest.ini_options]",
        f"markers = {toml_list(pytest_options.get('markers', []))}",
    ]
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")


def mutated_path(module: str) -> str:
    """services/gateway/modelserve/gateway/routing.py -> src/modelserve/gateway/routing.py"""
    return "src/modelserve/" + module.split("/modelserve/", 1)[1]


def run_mutmut(work: Path, timeout: float, max_children: int) -> bool:
    """mutmut run in `work`, stopped (its whole process group) after `timeout` seconds.
    True when it finished in time."""
    log = (work / "mutmut.log").open("w")
    env = {**os.environ, "HOME": os.environ.get("HOME", str(work))}
    command = [str(Path(sys.executable).parent / "mutmut"), "run"]
    command += ["--max-children", str(max_children)]
    process = subprocess.Popen(
        command, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return False
    finally:
        log.close()
    return process.returncode == 0


def exit_codes(work: Path, target: Target) -> dict[str, int | None]:
    """Each mutant's exit code as mutmut recorded it (None: not run)."""
    codes: dict[str, int | None] = {}
    for module in target.modules:
        meta = work / "mutants" / (mutated_path(module) + ".meta")
        if meta.exists():
            codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def status(code: int | None) -> str:
    """mutmut's meaning of an exit code (mutmut.stats.status_by_exit_code), grouped."""
    if code is None:
        return "not checked"
    if code in (1, 3):
        return "killed"
    if code == 0:
        return "survived"
    if code in (36, 24, -24, 152, 255):
        return "timeout"
    if code in (5, 33):
        return "no tests"
    return "suspicious"


def describe(names: list[str]) -> list[dict[str, str]]:
    """In a target's work folder (the current directory, where mutmut reads its settings):
    each mutant as file, line and the changed line before and after. Run through
    `--describe`, since mutmut reads its settings when it is imported."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    found = []
    for name in names:
        module = name.rsplit(".", 1)[0]
        source_file = Path("src", *module.split(".")).with_suffix(".py")
        diff = get_diff_for_mutant(name, path=source_file)
        function, cls = orig_function_and_class_names_from_key(name)
        start = function_start(source_file.read_text(), function.rpartition(".")[-1], cls)
        line, before, after = changed_line(diff)
        found.append(
            {
                "name": name,
                "file": str(source_file),
                "line": str(start + line - 1 if start else "?"),
                "before": before,
                "after": after,
            }
        )
    return found


def function_start(source: str, function: str, cls: str | None) -> int:
    """The first line (decorators included) of `cls.function` or `function` in `source`."""
    for node in ast.walk(ast.parse(source)):
        if cls is not None and not (isinstance(node, ast.ClassDef) and node.name == cls):
            continue
        body = node.body if isinstance(node, ast.ClassDef) else [node]
        for item in body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == function:
                return min([item.lineno] + [d.lineno for d in item.decorator_list])
    return 0


def changed_line(diff: str) -> tuple[int, str, str]:
    """The first changed line of a unified diff: its number in the old text, old and new."""
    old = 0
    before: str | None = None
    for text in diff.splitlines():
        hunk = re.match(r"@@ -(\d+)", text)
        if hunk:
            old = int(hunk.group(1))
            continue
        if text.startswith(("---", "+++")):
            continue
        if text.startswith("-"):
            if before is None:
                before, line = text[1:].strip(), old
            old += 1
        elif text.startswith("+"):
            if before is None:
                return old, "", text[1:].strip()
            return line, before, text[1:].strip()
        else:
            if before is not None:
                return line, before, "(removed)"
            old += 1
    return (line, before, "(removed)") if before is not None else (0, "", "")


def describe_in(work: Path, names: list[str]) -> list[dict[str, str]]:
    if not names:
        return []
    answer = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--describe", *names],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    found: list[dict[str, str]] = json.loads(answer.stdout)
    return found


def run_target(name: str, target: Target, args: argparse.Namespace, base: Path) -> Counter[str]:
    work = base / name
    work.mkdir()
    copy_tree(work)
    write_config(work, target)
    started = time.monotonic()
    finished = run_mutmut(work, args.timeout, args.max_children)
    took = time.monotonic() - started
    codes = exit_codes(work, target)
    counts = Counter(status(code) for code in codes.values())
    counts["mutants"] = len(codes)
    print(
        f"{name}: {counts['mutants']} mutants, {counts['killed']} killed, "
        f"{counts['survived']} survived, {counts['timeout']} timeouts, "
        f"{counts['not checked']} not checked, {counts['no tests']} without tests, "
        f"{counts['suspicious']} suspicious ({took:.0f} s{'' if finished else ', stopped'})"
    )
    if not codes:
        print(f"  mutmut produced nothing: see {work / 'mutmut.log'} (--keep)")
    survivors = sorted(key for key, code in codes.items() if status(code) == "survived")
    for mutant in describe_in(work, survivors):
        where = f"{mutant['file'].removeprefix('src/')}:{mutant['line']}"
        print(f"  {where}  {mutant['before']!s}  ->  {mutant['after']!s}")
    sys.stdout.flush()
    return counts


def main() -> None:
    if sys.argv[1:2] == ["--describe"]:
        print(json.dumps(describe(sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (all)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per target")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}: choose from {', '.join(TARGETS)}")
    base = Path(tempfile.mkdtemp(prefix="modelserve-mutation-"))
    total: Counter[str] = Counter()
    try:
        for name in args.targets or list(TARGETS):
            total += run_target(name, TARGETS[name], args, base)
    finally:
        if args.keep:
            print(f"work folders kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(
        f"all: {total['mutants']} mutants, {total['killed']} killed, "
        f"{total['survived']} survived, {total['timeout']} timeouts, "
        f"{total['not checked']} not checked"
    )


if __name__ == "__main__":
    main()
