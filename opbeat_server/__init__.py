"""Opbeat Server: the Django project (settings, urls, the Celery app, wsgi)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
