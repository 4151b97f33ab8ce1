"""Calendar feeds: a room's bookings as iCal at a secret address (services/feeds.py); the address is the key."""
from flask import Blueprint, Response, abort

from ..services import feeds

bp = Blueprint("feeds", __name__, url_prefix="/feeds")


@bp.get("/rooms/<token>.ics")
def room_feed(token: str):
    room = feeds.room_for_token(token)
    if room is None:
        abort(404)  # a wrong or rotated address looks like nothing at all
    response = Response(feeds.room_calendar(room), mimetype="text/calendar")
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
