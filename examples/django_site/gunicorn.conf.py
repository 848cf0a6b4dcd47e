"""gunicorn settings: ``gunicorn -c gunicorn.conf.py mysite.wsgi`` (``--preload`` works too)."""

bind = "127.0.0.1:8000"
workers = 2
worker_class = "gthread"  # several requests per worker, procsync's threads beside them
threads = 4


def post_worker_init(worker):
    """Optional: each worker makes its orchestrator as soon as it has loaded the app, so the
    monitor and automatic restarts run before its first request (without this hook the
    first request makes it). After the fork, with or without --preload."""
    from procsync.django_ext import get_orchestrator

    get_orchestrator()
