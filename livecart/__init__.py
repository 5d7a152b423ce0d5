"""LiveCart: a self-hosted backend for private-domain live-stream sales."""

__version__ = "0.1.0"
