import sys; from pathlib import Path  # noqa: E702 - Triton shim: the model code lives in serving/triton_models
sys.path.append(str(Path(__file__).resolve().parents[4]))  # fallback: repo root (if descstream isn't installed)
from serving.triton_models.fact_verifier import TritonPythonModel  # noqa: E402,F401
