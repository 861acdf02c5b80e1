"""Delivery (出件): how results reach the applicant, and the order its status moves in."""
PREPARED, DISPATCHED, COMPLETED = "DELIVERY_STATUS_PREPARED", "DELIVERY_STATUS_DISPATCHED", "DELIVERY_STATUS_COMPLETED"
ELECTRONIC, WINDOW, MAIL = "DELIVERY_CHANNEL_ELECTRONIC", "DELIVERY_CHANNEL_WINDOW", "DELIVERY_CHANNEL_MAIL"


def steps_for(channel):
    """Statuses a new delivery passes through at once. ELECTRONIC is complete when its time-limited
    links are issued; WINDOW and MAIL wait, dispatched, for pickup or the carrier."""
    if channel == ELECTRONIC:
        return [PREPARED, DISPATCHED, COMPLETED]
    return [PREPARED, DISPATCHED]
