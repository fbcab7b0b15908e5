"""news-rec task (stage-wise temporal news recommendation), in progress: data groundwork only.

Modules: ``data`` (MIND behaviors.tsv / news.tsv reader, writer and statistics), ``adressa`` (raw
Adressa one_week events to MIND format), ``stages`` (leak-free stage partition of timed clicks),
``synth`` (the seeded temporal-drift generator) and ``scoring`` (the official MIND scorer).
"""
