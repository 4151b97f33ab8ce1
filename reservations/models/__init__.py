"""All models, one module per aggregate; importing this registers them all."""
from .audit import AuditEntry, record
from .booking import ACTIVE_STATES, Booking, BookingState, IllegalTransition
from .facility import Building, Closure, ClosureKind, Division, Letting, Room, RoomEquipment, RoomKind
from .payment import (
    AttentionCase,
    LedgerEntry,
    Payment,
    PaymentState,
    PaymentStateError,
    ProviderObject,
    Receipt,
    Refund,
    RefundState,
    WebhookEvent,
)
from .user import Residency, Role, User

__all__ = [
    "ACTIVE_STATES",
    "AttentionCase",
    "AuditEntry",
    "Booking",
    "BookingState",
    "Building",
    "Closure",
    "ClosureKind",
    "Division",
    "IllegalTransition",
    "LedgerEntry",
    "Letting",
    "Payment",
    "PaymentState",
    "PaymentStateError",
    "ProviderObject",
    "Receipt",
    "Refund",
    "RefundState",
    "Residency",
    "Role",
    "Room",
    "RoomEquipment",
    "RoomKind",
    "User",
    "WebhookEvent",
    "record",
]
