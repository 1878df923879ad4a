"""A local Ray + Serve graph in this process, for the tests, the scripts and quick experiments.

What belongs here: starting a private single-node Ray cluster, Serve on a free loopback port,
deploying :func:`app.serve.graph.build_app`, and shutting down exactly what was started. Nothing
here is used by a deployed graph. Ray, Serve and the graph are imported only when a graph is
started, so :func:`free_port` costs nothing to import.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_graph(
    args: dict[str, Any], name: str = "tierroute-local", port: int | None = None, num_cpus: float = 2, **ray_options: Any
) -> Iterator[str]:
    """Deploy ``build_app(args)`` as application ``name`` on a fresh local Ray cluster; yield its base URL.

    Ray starts with ``num_cpus`` CPUs, no dashboard and no driver logs (extra ``ray.init`` keywords in
    ``ray_options``), with token authentication off (``RAY_AUTH_MODE=disabled``, a loopback-only
    cluster). Serve listens on 127.0.0.1:``port`` (a free port when None). ``serve.run`` returns once
    every deployment's replicas are up. On exit, Serve and Ray are shut down (never ``ray stop``:
    another cluster on this machine is left alone).
    """
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    from ray import serve

    from app.serve.graph import build_app

    port = port or free_port()
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, **ray_options)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=name, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
