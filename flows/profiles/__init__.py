"""Profile ingestion: measured execution times (CSV profiles, Jaeger traces) become a validated workload.

Stage 1 of REACH. The readers (:mod:`.csv_profiles`, :mod:`.jaeger`) turn raw inputs into one
profile table; :mod:`.checks` validates it with Great Expectations against the scenario and the
workload; :mod:`.dataset` aggregates it and writes a new, versioned dataset directory;
:mod:`.ingest` composes these steps for the ``reach profiles`` commands and the flows. pandas and
great_expectations are imported here, never in :mod:`ceenv`; :mod:`.workmodel` turns muBench work
models into REACH workloads. It imports ceenv only.
"""
