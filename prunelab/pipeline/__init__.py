"""The pipeline driver (`prunelab pipeline`): stages planned from one config (`plan.py`), reused when verified
(`cache.py`), run in order with a summary (`run.py`)."""
