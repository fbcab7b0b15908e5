"""rPPG (remote photoplethysmography): classical pulse-extraction methods and the rPPG-Toolbox style
post-processing and heart-rate metrics. See ``classical`` and ``postprocess``; no task is registered here."""
