FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY authapi ./authapi
COPY project ./project
RUN pip install --no-cache-dir .
RUN useradd --system app && mkdir -p /data && chown app /data
USER app
