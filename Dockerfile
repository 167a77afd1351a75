# Gatehouse gateway image: `docker run -p 4000:4000 -v $PWD/config.yaml:/app/config.yaml gatehouse`
# The same image runs every role of deploy/compose.yaml: `serve` (the entrypoint), and with the entrypoint
# `python manage.py`, `migrate` and `batch_worker`.
FROM python:3.11-slim

# Optional extra packages, e.g. a file-storage backend for GATEWAY_FILE_STORAGE on separate machines:
# `docker build --build-arg EXTRA_PIP_PACKAGES="django-storages[s3]==1.14.6" -t gatehouse .`
ARG EXTRA_PIP_PACKAGES=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_STATE_DIR=/data \
    GATEWAY_STATIC_ROOT=/app/staticfiles \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=4000

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
    && if [ -n "$EXTRA_PIP_PACKAGES" ]; then pip install --no-cache-dir $EXTRA_PIP_PACKAGES; fi

COPY . .
RUN groupadd --system gatehouse && useradd --system --gid gatehouse --home /app gatehouse \
    && mkdir -p /data && chown gatehouse:gatehouse /data \
    && SECRET_KEY=build-only python manage.py collectstatic --noinput --verbosity 0

USER gatehouse
VOLUME ["/data"]
EXPOSE 4000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4000/health/liveliness', timeout=2).status == 200 else 1)"

ENTRYPOINT ["python", "manage.py", "serve"]
CMD ["--config", "/app/config.yaml"]
