"""Ray: Core tasks and actors, and Serve handle calls and HTTP ingress, traced across processes and nodes.

* ``core``: tasks and actors (the context travels in our keyword parameter ``_skywalking_ctx``);
* ``serve``: Serve handle calls and HTTP ingress (the context rides on Serve's ``RequestMetadata``);
* ``activation``: the agent in every worker (``ray.init()`` adds our ``worker_process_setup_hook``, node-level
  preloading) and the flush when a worker's task loop ends.

See docs/ray.md.
"""

from __future__ import annotations

from types import ModuleType

from skywalking.bootstrap.autostart import SETUP_HOOK
from skywalking.plugins import Plugin
from skywalking.plugins.sw_ray import activation, core
from skywalking.plugins.sw_ray.activation import setup_worker, start_in_worker
from skywalking.plugins.sw_ray.core import KEY

__all__ = ["KEY", "SETUP_HOOK", "RayPlugin", "plugin", "setup_worker", "start_in_worker"]


class RayPlugin(Plugin):
    name = "sw_ray"
    instruments = ("ray>=2.9",)
    modules = ("ray",)
    note = "Ray Core tasks and actors, Ray Serve handle calls and HTTP ingress; see docs/ray.md"

    def _install(self) -> None:
        import ray
        import ray._private.worker
        import ray.actor
        import ray.remote_function

        self.wrap(ray.remote_function, "_inject_tracing_into_function", core.inject_function)
        self.wrap(ray.remote_function, "RemoteFunction._remote", core.task_remote)
        self.wrap(ray.actor, "_inject_tracing_into_class", core.inject_class)
        function_manager: ModuleType | None
        try:
            import ray._private.function_manager as function_manager
        except ImportError:
            function_manager = None
        if function_manager is not None and hasattr(function_manager, "_inject_tracing_into_class"):
            self.wrap(function_manager, "_inject_tracing_into_class", core.inject_class)  # 2.54+: worker side
        if function_manager is not None and core.cluster_wide():
            self.wrap(function_manager, "FunctionActorManager.get_execution_info", core.execution_info)
        self.wrap(ray.actor, "ActorMethod._remote", core.actor_method_remote)
        self.wrap(ray.actor, "ActorClass._remote", core.actor_create_remote)
        self.wrap(ray, "init", activation.ray_init)
        self.wrap(ray._private.worker, "Worker.main_loop", activation.main_loop)
        self.when_imported("ray.serve", self._install_serve)  # not every worker uses (or imports) Serve

    def _install_serve(self) -> None:
        from skywalking.plugins.sw_ray import serve

        serve.install(self)


plugin = RayPlugin()
