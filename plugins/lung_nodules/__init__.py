"""Lung nodule detection: lung mask, synthetic nodules, classical CAD and a trained 3D detector."""
