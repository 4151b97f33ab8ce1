"""Absolute links for mail, always on PUBLIC_BASE_URL.

Never built from the request: its Host header is whatever the client sent, so a
password reset asked for with `Host: attacker.invalid` would mail the resident
a link to the attacker's site, token included. Jobs have no request at all.
"""
from urllib.parse import urlsplit

from flask import current_app


def external_url(endpoint: str, **values) -> str:
    """The absolute URL of `endpoint` (its full name, e.g. "account.verify_email") on PUBLIC_BASE_URL."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    # Bound afresh rather than through url_for, which would take the host from the current request.
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)
