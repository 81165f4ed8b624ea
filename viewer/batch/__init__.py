"""Batch runs: one AI plugin over many series, on a Dask cluster (``hounsfield batch``).

    from viewer.batch import folder_items, open_cluster, run_batch
    items = folder_items("archive/")                        # or list_items("paths.txt"), pacs_items(node, local, ...)
    with open_cluster(workers=2) as c:                       # a LocalCluster; or scheduler="tcp://host:8786"
        report = run_batch(info, items, "results/", c.client, params={"dose": 0.25},
                           threads=c.threads, workers=c.workers)

``sources`` plans the series (headers only), ``task`` runs one series on a worker the way
``hounsfield run`` does and writes its results atomically, ``summary`` keeps ``summary.csv``,
``runner`` submits and collects, ``cluster`` starts or joins the cluster, ``cli`` is the command.
"""

__all__ = ["BatchReport", "Item", "folder_items", "list_items", "open_cluster", "pacs_items", "run_batch"]

_HOMES = {"open_cluster": "cluster", "BatchReport": "runner", "run_batch": "runner", "Item": "sources",
          "folder_items": "sources", "list_items": "sources", "pacs_items": "sources"}


def __getattr__(name: str):  # loaded on first use: the command line's parser imports viewer.batch.cli only
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"viewer.batch.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'viewer.batch' has no attribute {name!r}")
