"""affectkit: research methods of affective computing as one command-line toolkit."""

__version__ = "0.1.0"
