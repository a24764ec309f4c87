"""Triton Python-backend model code; `serving/model_repository/<model>/<N>/model.py` shims import from here."""
