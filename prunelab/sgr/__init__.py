"""Self-Generated Responses: choose prompts, have the base model answer them, keep the answers as parquet shards.
Ray-free; `prunelab.distributed.sgr` runs the same generator on Ray Data, and `prunelab.stages.sgr` drives both."""
