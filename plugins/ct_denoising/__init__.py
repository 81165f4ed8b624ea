"""CT denoising: the first built-in AI plugin (manifest: plugin.json; code: plugin.py)."""
