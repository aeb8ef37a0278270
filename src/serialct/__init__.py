"""serialct: serial chest-CT quantification of viral pneumonia."""

__version__ = "0.1.0"
