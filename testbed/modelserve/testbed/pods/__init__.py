"""Pods that really run: the test bed's stand-in for a kubelet and its pod network.

KWOK plays every node, but only pretends to run pods. For the pods of the `llamacpp`
runtime, `PodRunner` plays the kubelet instead: it runs the pod's init containers and its
server with the pod's own arguments, bound to the pod's IP inside a network namespace
that `PodNetwork` made, and reports what really happens in the pod's status.
"""
