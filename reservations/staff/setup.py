"""Facility setup pages: buildings, rooms, time, prices, closures, rules and payment mode."""
from . import bp, staff_required  # noqa: F401
