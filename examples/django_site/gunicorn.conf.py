"""gunicorn settings: ``gunicorn -c gunicorn.conf.py mysite.wsgi`` (``--preload`` works too)."""

bind = "127.0.0.1:8000"
workers = 2
worker_class = "gthread"  # several requests per worker, procsync's threads beside them
threads = 4


def post_worker_init(worker):
    """Each worker makes its orchestrator once the app is loaded: after the fork, with or
    without --preload, so the monitor and the leader run before the first request."""
    from servers.orchestrator import get_orchestrator

    get_orchestrator()
