"""A service that has started freezes the heap its startup built and collects its young
generation after GC_YOUNG_THRESHOLD new objects (`collector`); the service's own startup
comes first and its shutdown still runs, and cycles made later are still collected."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Run apart: freezing the heap and the collector's thresholds are the whole process's.
SCRIPT = textwrap.dedent(
    """
    import contextlib
    import gc
    import json
    import weakref

    from fastapi.testclient import TestClient

    from modelserve.common.service import create_service_app
    from modelserve.common.settings import ServiceSettings

    class Node:
        def __init__(self) -> None:
            self.other = self

    seen = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.built = Node()  # made by the service's startup: frozen after it
        seen["tracked before"] = any(o is app.state.built for o in gc.get_objects())
        yield
        seen["shut down"] = True

    app = create_service_app("probe", ServiceSettings(port=1, gc_young_threshold=5000),
                             lifespan=lifespan)
    before = gc.get_threshold()
    with TestClient(app) as client:
        seen["health"] = client.get("/health").status_code
        seen["frozen"] = gc.get_freeze_count()
        seen["tracked after"] = any(o is app.state.built for o in gc.get_objects())
        seen["threshold"] = list(gc.get_threshold())
        later = Node()  # a cycle made once started, then garbage
        gone = weakref.ref(later)
        del later
        gc.collect()
        seen["later cycle collected"] = gone() is None
    seen["default"] = list(before)
    print(json.dumps(seen))
    """
)


def test_a_started_service_freezes_its_heap_and_collects_young_objects_later() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(done.stdout)
    assert seen["health"] == 200
    assert seen["tracked before"] is True
    # Frozen: no collection walks it again (it leaves gc.get_objects()).
    assert seen["tracked after"] is False
    assert seen["frozen"] > 10_000
    assert seen["threshold"] == [5000, *seen["default"][1:]]
    assert seen["default"][0] == 700
    assert seen["later cycle collected"] is True
    assert seen["shut down"] is True


def test_the_young_threshold_is_read_from_the_environment_and_checked() -> None:
    script = textwrap.dedent(
        """
        import json
        from pydantic import ValidationError
        from modelserve.contract.settings import ContractSettings
        print(json.dumps(ContractSettings().gc_young_threshold))
        try:
            ContractSettings(gc_young_threshold=0)
        except ValidationError as error:
            print(json.dumps(error.errors()[0]["loc"]))
        """
    )
    env = {
        "CONTRACT_GC_YOUNG_THRESHOLD": "50000",
        "MODELSERVE_DEVELOPMENT": "true",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == 50000, done.stderr
    assert json.loads(lines[1]) == ["gc_young_threshold"]
