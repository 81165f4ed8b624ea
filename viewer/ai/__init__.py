"""The AI plugin host: plugin API types, discovery, the worker process, devices, model loading.

Nothing here imports torch in the viewer's process; torch and models load in the worker.

    from viewer.ai import AIHost
    host = AIHost()                          # discovers plugins lazily; starts no process
    [p.name for p in host.compatible(vol)]   # plugins that accept this volume
    handle = host.run("ct-denoising", vol, {"dose": 0.25}, on_progress=..., on_done=...)
    handle.cancel(); handle.result()         # Results, or HounsfieldError with one sentence

Plugin authors: see docs/plugins.md and ``viewer.ai.api``.
"""

from viewer.ai.api import (
    Cancelled,
    DerivedImage,
    Detection,
    Figure,
    Heatmap,
    InputSpec,
    LabelMap,
    ModelCard,
    Parameter,
    PluginInfo,
    Results,
    RunContext,
    Segment,
    Task,
)

__all__ = ["AIHost", "Cancelled", "DerivedImage", "Detection", "Figure", "Heatmap", "InputSpec", "LabelMap",
           "ModelCard", "Parameter", "PluginInfo", "Registry", "Results", "RunCancelled", "RunContext",
           "RunHandle", "Segment", "Task"]


def __getattr__(name):
    if name in ("AIHost", "RunHandle", "RunCancelled"):
        from viewer.ai import host

        return getattr(host, name)
    if name == "Registry":
        from viewer.ai.discovery import Registry

        return Registry
    raise AttributeError(name)
