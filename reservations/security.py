"""HTTP hardening: security headers on every response, and the reverse proxy the app may sit behind.

One after-request hook rather than Flask-Talisman: the policy depends on where
Stripe.js comes from (localstripe's origin locally, js.stripe.com live), HSTS
must follow `request.is_secure` behind ProxyFix, and the cookie and https
settings live in config.py and its production check. Talisman would also
redirect to https and set cookie flags itself, which the tests and `make run`
(plain http on loopback) would have to switch off again.

No template carries inline script or style, so the policy needs neither
'unsafe-inline' nor a nonce. Setting `element.style` from a script (as
localstripe's 3-D Secure dialog does) is not inline style and is allowed.
"""
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

LIVE_STRIPE_JS_ORIGIN = "https://js.stripe.com"
# What real Stripe.js needs besides its own origin (Stripe's CSP guide): its helper scripts and frames,
# the API it calls from the browser, and hooks.stripe.com, which frames the 3-D Secure challenge.
LIVE_STRIPE_SOURCES = {
    "script-src": ("https://*.js.stripe.com",),
    "connect-src": ("https://api.stripe.com",),
    "frame-src": ("https://*.js.stripe.com", "https://hooks.stripe.com"),
}


def init_app(app: Flask) -> None:
    hops = app.config["PROXY_FIX_X_FORWARDED"]
    if hops:
        # Only the proxies we run may say which client, scheme and host a request came with.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    # The policy depends only on settings fixed when the app is made: built once, not per response.
    app.extensions["content_security_policy"] = content_security_policy(app.config)
    app.after_request(add_security_headers)


def _origin(url: str | None) -> str | None:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def content_security_policy(config) -> str:
    """Only this site, plus the configured Stripe.js: its script, the API it calls and its frames.

    localstripe's Stripe.js calls the server it was loaded from and runs 3-D Secure
    in the page, so locally its origin is the only one needed.
    """
    stripe = _origin(config.get("STRIPE_JS_URL"))
    if stripe == LIVE_STRIPE_JS_ORIGIN:
        extra = {"script-src": (stripe, *LIVE_STRIPE_SOURCES["script-src"]),
                 "connect-src": LIVE_STRIPE_SOURCES["connect-src"],
                 "frame-src": (stripe, *LIVE_STRIPE_SOURCES["frame-src"])}
    else:
        extra = {name: (stripe,) if stripe else () for name in ("script-src", "connect-src", "frame-src")}
    directives = {
        "default-src": ("'self'",),
        "script-src": ("'self'", *extra["script-src"]),
        "connect-src": ("'self'", *extra["connect-src"]),
        "frame-src": extra["frame-src"] or ("'none'",),
        "img-src": ("'self'", "data:"),  # data: for the empty favicon in base.html
        "style-src": ("'self'",),
        "object-src": ("'none'",),
        "base-uri": ("'none'",),
        "form-action": ("'self'",),
        "frame-ancestors": ("'none'",),  # nobody may frame the pay page or the cancel button
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def add_security_headers(response: Response) -> Response:
    """On every response Flask sends: pages, errors, JSON, static files and the webhook's answers."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", current_app.extensions["content_security_policy"])
    headers.setdefault("X-Frame-Options", "DENY")  # frame-ancestors for browsers that predate it
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    max_age = current_app.config["HSTS_MAX_AGE"]
    # Over plain http a browser ignores HSTS, and it would pin a development host to https.
    # (Never request.host here: on a request refused by TRUSTED_HOSTS it raises again.)
    if request.is_secure and max_age:
        headers.setdefault("Strict-Transport-Security", f"max-age={max_age}; includeSubDomains")
    return response
