"""After-booking operations: moves, used / no-show marking, no-show suspensions."""
from . import bp, staff_required  # noqa: F401
