"""Run localstripe, the fake Stripe server, on loopback only and from a clean state.

localstripe's own CLI binds every interface and reloads /tmp/localstripe.pickle;
this starts its aiohttp app on 127.0.0.1 with an empty store and keeps nothing
on disk, so runs never see each other's objects.

    python -m reservations.payments.localstripe_server --port 8420 \
        --webhook-url http://127.0.0.1:5000/webhooks/stripe
"""
import argparse

from aiohttp import web
from localstripe import server
from localstripe.resources import store
from localstripe.webhooks import register_webhook


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--webhook-url", help="deliver signed events here (the app's /webhooks/stripe)")
    parser.add_argument("--webhook-secret", default="whsec_localstripe")
    args = parser.parse_args()
    store.clear()
    store.dump_to_disk = lambda: None  # no shared state file between runs
    if args.webhook_url:
        register_webhook("app", args.webhook_url, args.webhook_secret, None)
    web.run_app(server.app, host=args.host, port=args.port, print=lambda msg: print(msg, flush=True))


if __name__ == "__main__":
    main()
