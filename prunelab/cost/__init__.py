"""Inference cost: the architecture's bound (`bound.py`) and a measurement in a process of its own (`measure.py`);
the stage that runs them is `prunelab.stages.cost`."""
