"""Calling actors: Ray's errors become Shoal's, in one place.

An exception raised inside a replica comes back wrapped in ``RayTaskError``; its cause is
the original ShoalError (or a replica signal) and is raised as is, so a cluster collection
raises the same classes as an embedded one. A replica that is dead, restarting or
unreachable, or a call that does not return within its timeout, raises ``Unreachable``
(the router then tries another replica).
"""
from __future__ import annotations

from typing import Any

NAMESPACE = "shoal"


class Unreachable(Exception):
    """The actor did not answer (dead, restarting, not created, or too slow)."""


def replica_name(collection: str, shard: int, replica: int) -> str:
    return f"shoal/{collection}/{shard}/{replica}"


def get(ref: Any, timeout: float | None) -> Any:
    import ray
    from ray import exceptions as rex

    try:
        return ray.get(ref, timeout=timeout)
    except rex.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, rex.RayActorError):
            raise Unreachable(str(cause)) from None
        if isinstance(cause, Exception):
            raise cause from None
        raise Unreachable(str(exc)) from None
    except (rex.RayActorError, rex.GetTimeoutError, rex.ObjectLostError) as exc:
        raise Unreachable(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def node_id() -> str:
    """The Ray node this process runs on (a replica reports it in ``info``)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def actor(name: str) -> Any:
    """The handle of a named actor, or Unreachable when none is alive under that name."""
    import ray

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        raise Unreachable(f"no actor named {name!r}") from None
