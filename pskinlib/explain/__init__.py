"""Explaining predictions: where a network looks (:mod:`~pskinlib.explain.gradcam`) and which images it gets
wrong (:mod:`~pskinlib.explain.inspector`, plain functions plus ipywidgets for JupyterLab)."""
