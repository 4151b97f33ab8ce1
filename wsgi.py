"""Entry point for gunicorn: `gunicorn wsgi:app`. The scheduler never starts here.

With APP_ENV unset this is production: create_app raises ConfigError, naming every
variable still missing or at its development value, and gunicorn stops.
"""
from reservations import create_app

app = create_app()
