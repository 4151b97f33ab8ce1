"""Entry point for gunicorn: `gunicorn wsgi:app`. The scheduler never starts here."""
from reservations import create_app

app = create_app()
