"""Rooms and their lifecycle, invites and share links, viewer identity (video and pages come later)."""
