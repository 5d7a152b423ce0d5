"""The websocket hub (per-room channels, snapshot + deltas). Built in a later issue."""
