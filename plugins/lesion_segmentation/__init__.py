"""Lesion segmentation: click or box to a 3D lesion mask (manifest: plugin.json; code: plugin.py)."""
