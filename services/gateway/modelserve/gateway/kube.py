"""The gateway's Kubernetes client (the `kubernetes` package, used from threads: creating
and listing servers is not on the proxy's hot path, and routes come from a watch)."""

from __future__ import annotations

import logging
import os

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from modelserve.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)


def load_api_client(settings: GatewaySettings) -> k8s.ApiClient | None:
    """From `settings.kubeconfig` or $KUBECONFIG; in a pod, its service account. None
    where there is no cluster to talk to: then the gateway serves no servers."""
    configuration = k8s.Configuration()
    kubeconfig = settings.kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig:
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        logger.warning("no kubeconfig and not in a pod: servers and routes are off")
        return None
    return k8s.ApiClient(configuration)
