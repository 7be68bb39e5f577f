"""Monitoring: the in-process operations recorder, ``db.stats()``, tracing, Prometheus export."""
