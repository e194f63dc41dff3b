"""Set-active rollouts: a ModelServe's model replaced replica by replica, and put back by
itself when the new one does not become Ready (see `decisions`)."""
