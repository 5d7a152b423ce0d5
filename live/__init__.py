"""Rooms and their lifecycle, invites and share links, viewer identity, WebRTC video, the host console and
viewer pages."""
