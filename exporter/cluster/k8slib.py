"""kubernetes_asyncio without its generated API and model classes, which kube2git never uses.

The package's ``__init__`` (and its ``client`` package's) import every generated API and model
class, about 830 modules: 33 MiB of resident memory in every kube2git process, for classes the
exporter never touches (it reads raw JSON, see :mod:`~exporter.cluster.connection`). Here the
two packages are registered without running their ``__init__`` until someone asks for a name
they would define: their submodules still import normally, and any other code in the process
that wants ``kubernetes_asyncio.client.CoreV1Api`` (or ``kubernetes_asyncio.watch``) gets the
whole library, loaded on that first use. If the library was imported before this module, it is
used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

_DEFERRED = ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")


def _defer_init(name: str) -> None:
    """Register package ``name`` with its ``__path__`` but without running its ``__init__``: a
    submodule asked for by attribute is imported; any other name completes the package."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"{name} is not installed", name=name)
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(attribute: str) -> object:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        submodule = f"{name}.{attribute}"
        if importlib.util.find_spec(submodule) is not None:
            return importlib.import_module(submodule)
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, attribute)

    module.__dict__["__getattr__"] = complete  # PEP 562: asked for names it lacks
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _register() -> None:
    if "kubernetes_asyncio" in sys.modules:
        return
    for name in _DEFERRED:
        _defer_init(name)
    client = sys.modules["kubernetes_asyncio.client"]
    # kubernetes_asyncio.config imports these two names from the client package.
    configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
    api_client = importlib.import_module("kubernetes_asyncio.client.api_client")
    client.__dict__.update(
        Configuration=configuration.Configuration, ApiClient=api_client.ApiClient
    )


_register()

# After the registration, on purpose.
from kubernetes_asyncio.client import ApiClient, Configuration  # noqa: E402
from kubernetes_asyncio.config import (  # noqa: E402
    ConfigException,
    load_incluster_config,
    load_kube_config,
)

__all__ = [
    "ApiClient",
    "ConfigException",
    "Configuration",
    "load_incluster_config",
    "load_kube_config",
]
