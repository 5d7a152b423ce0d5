"""The websocket hub: per-room channels, snapshot + sequenced deltas, coalesced live stock, honest presence,
fan-out across processes through Redis."""
