# descstream worker / reader image (CPU). torch is pinned to the CPU build through constraints.txt.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY descstream ./descstream
COPY streams ./streams
COPY serving ./serving
COPY models ./models
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt .
USER 1000
CMD ["descstream", "worker"]
