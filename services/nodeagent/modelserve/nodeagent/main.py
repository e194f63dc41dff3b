"""`modelserve-nodeagent`: report this node's GPUs and apply the power profile."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import ValidationError

from modelserve.nodeagent.agent import NodeAgent
from modelserve.nodeagent.settings import NodeAgentSettings


def load_api_client(settings: NodeAgentSettings) -> k8s.ApiClient:
    """From `settings.kubeconfig` or $KUBECONFIG; else the pod's service account."""
    configuration = k8s.Configuration()
    kubeconfig = settings.kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig:
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)
    return k8s.ApiClient(configuration)


def main() -> None:
    try:
        settings = NodeAgentSettings()  # type: ignore[call-arg]  # from the environment
    except ValidationError as error:
        problems = "\n".join(
            f"  {'.'.join(map(str, problem['loc'])) or error.title}: {problem['msg']}"
            for problem in error.errors()
        )
        sys.exit(f"modelserve-nodeagent: invalid settings:\n{problems}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    with load_api_client(settings) as api:
        agent = NodeAgent(settings, api)
        try:
            agent.run(stop)
        finally:
            agent.close()
