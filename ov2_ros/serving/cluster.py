"""Starting Ray, Serve and the deployment: shared by ``ov2-ros serve``, ``bench/fleet.py`` and the tests."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ov2_ros.serving.deployment import ServeConfig, build_app
from ov2_ros.serving.errors import ServingError

DEPLOYMENT = "Ov2Server"


def start(address: str | None = None, num_cpus: float | None = None, num_gpus: float | None = None,
          host: str = "127.0.0.1", port: int = 8000) -> None:
    """Join the cluster at ``address`` (``auto``, ``head:6379``) or start a local one with these resources (no
    dashboard), then Serve with its HTTP proxy on ``host:port``."""
    import os

    import ray
    from ray import serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")     # robots' networks and CI have no business with it
    kwargs = {} if address else {"num_cpus": num_cpus, "num_gpus": num_gpus}
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **kwargs)
    serve.start(http_options={"host": host, "port": port})


def replica_states(app: str) -> dict[str, int]:
    """{replica state: count} of the app's deployment ({} while it is not known to Serve)."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or DEPLOYMENT not in status.deployments:
        return {}
    return {str(getattr(k, "value", k)): int(v) for k, v in status.deployments[DEPLOYMENT].replica_states.items()}


def deploy(config: ServeConfig, app: str = "ov2", progress: Callable[[str], None] | None = None,
           poll_s: float = 1.0, timeout_s: float = 600.0) -> None:
    """``serve.run`` the app (HTTP route ``/<app>``), reporting ``replicas R/N running (...)`` while they come up.

    Raises ServingError when the app fails to deploy or is not running within ``timeout_s``."""
    from ray import serve

    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(build_app(config), name=app, route_prefix=f"/{app}")
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="ov2-serve-run", daemon=True)
    thread.start()
    deadline, last = time.monotonic() + timeout_s, ""
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(poll_s)
        states = replica_states(app)
        line = f"{app}: replicas {states.get('RUNNING', 0)}/{config.replicas} running" + (
            f" ({', '.join(f'{n} {s.lower()}' for s, n in sorted(states.items()) if s != 'RUNNING')})"
            if len(states) > 1 or "RUNNING" not in states else "")
        if progress is not None and line != last:
            progress(line)
            last = line
    if failure:
        raise ServingError(f"deploying {app!r} failed: {type(failure[0]).__name__}: {failure[0]}") from failure[0]
    if thread.is_alive():
        raise ServingError(f"{app!r} was not running after {timeout_s:.0f} s: {replica_states(app)}")
    if progress is not None:
        progress(f"{app}: replicas {config.replicas}/{config.replicas} running")


def kill_replicas(app: str) -> int:
    """Kill the app's replica actors (Serve starts new ones): a replica crash, for tests and the benchmark."""
    import ray

    killed = 0
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == "serve" and f"{app}#{DEPLOYMENT}#" in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace="serve"), no_restart=True)
            killed += 1
    return killed


def shutdown() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
