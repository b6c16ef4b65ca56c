# One image for the web server, the Celery worker and Celery beat (docker-compose.yml picks the
# command). It runs from the source tree: templates/ and static/ sit next to the packages, so the
# project is installed in editable mode rather than copied into site-packages.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=opbeat_server.settings \
    OPBEAT_VAR_DIR=/var/lib/opbeat

RUN useradd --system --create-home --home-dir /home/opbeat opbeat \
    && mkdir -p /app /var/lib/opbeat \
    && chown opbeat:opbeat /var/lib/opbeat
WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them. opbeat-agent
# (whose scrubbing rules the worker runs) is this repository's agent/, installed from the tree
# below, never from the index (pyproject.toml says why it is not a listed dependency).
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
# Static files are baked into the image (whitenoise serves them from the web process); the
# throwaway key only lets settings import, nothing is signed at build time.
# --no-deps for the agent too: its one dependency (wrapt) serves auto-instrumentation, which the
# server never imports.
RUN pip install --no-deps -e ./agent -e . \
    && SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && chown -R opbeat:opbeat /var/lib/opbeat

USER opbeat
EXPOSE 8000
CMD ["granian", "--interface", "wsgi", "--host", "0.0.0.0", "--port", "8000", "--workers", "4", "--blocking-threads", "32", "--http1-header-read-timeout", "10000", "--access-log", "opbeat_server.wsgi:application"]
