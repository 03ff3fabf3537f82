"""facecast: a self-hostable real-time talking face for voice agents."""

__version__ = "0.1.0"
