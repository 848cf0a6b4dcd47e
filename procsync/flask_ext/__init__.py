"""Flask extension: see procsync.flask_ext.extension."""
