"""Every command of docs/registry.md is run, in order, in one bash, against `make dev`'s
platform: upload and register checkpoints, set them active and watch the server roll,
roll back, read the history, and the monitoring calls."""

from __future__ import annotations

from pathlib import Path

from modelserve.testbed.doc_scripts import DevPlatform, json_lines, shell_blocks

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "registry.md"


def test_the_registry_page_runs_as_written(dev: DevPlatform, tmp_path: Path) -> None:
    blocks = shell_blocks(PAGE.read_text())
    assert blocks and "source .dev/env" in blocks[0].text
    out = dev.run(blocks, tmp_path)

    (completed,) = json_lines(out["1. Upload the checkpoint"])
    assert completed["state"] == "complete"

    job, listed = json_lines(out["2. Register it"])
    assert out["2b. Register a checkpoint that is in the store already"].strip() in (
        "queued", "transferring", "verifying", "ready",
    )  # fmt: skip
    assert (job["model_id"], job["kind"]) == ("smollm2-step-5000", "register")
    (version,) = listed
    assert version["id"] == "smollm2-step-5000" and version["origin"] == "register"
    assert version["tags"] == ["step5000", "math"] and version["source_label"] == "4090"
    assert len(version["sha256"]) == 64 and version["architecture"] == "llama"

    (moved,) = json_lines(out["3. Set it active"])
    assert moved["changed"] and moved["id"] == "smollm2-step-5000"
    assert len(moved["servers"]) == 1

    active = json_lines(out["4. Watch the rollout"])[0]
    assert active["id"] == "smollm2-step-5000"
    assert [(s["version"], s["rollout"]) for s in active["servers"]] == [
        ("smollm2-step-5000", "Complete")
    ]
    assert "smollm2-step-5000" in out["4. Watch the rollout"]  # kubectl's VERSION column

    assert out["5. Evaluate it"].strip() == "chat.completion"

    (history,) = json_lines(out["Workflow 2: roll out the next checkpoint, and roll back"])
    assert [(h["action"], h["from_id"], h["to_id"]) for h in history] == [
        ("set_active", "smollm2-step-10000", "smollm2-step-5000"),
        ("set_active", "smollm2-step-5000", "smollm2-step-10000"),
        ("set_active", None, "smollm2-step-5000"),
    ]
    assert history[0]["reason"] == "step 10000 regressed on math"

    health, gpus, nodes = json_lines(out["Workflow 3: watch the GPUs and the platform"])[:3]
    assert health["status"] == "ok" and "smollm2-135m-instruct" in health["active_models"]
    assert gpus["capacity"] == 6  # the test bed's KWOK GPU nodes: 4 A100 and 2 L4
    assert {"cpu-0", "gpu-a100-0", "gpu-l4-0"} <= set(nodes)
