"""Reports of finished (or partly finished) artifact directories, from the results store and meta.json alone:

    write_report("runs/qwen-sweep")     # retention.csv/.md (+ layer_sensitivity.png, + strategies.* for compare)

`prunelab report DIR` calls it, so any artifact directory can be re-rendered anywhere, with the same result.
"""

import json
from pathlib import Path


def write_report(root: str | Path) -> dict[str, Path]:
    from prunelab.metadata import read_meta
    from prunelab.report.tables import retention_report, strategies_report
    from prunelab.results import ResultsStore

    root = Path(root)
    meta = read_meta(root)
    config = meta["config"]
    title = {"sweep": f"Layer sensitivity: {config['name']} ({config['model']['name']})",
             "eval": f"{config['name']} ({config['model']['name']})",
             "compare-strategies": f"Strategies: {config['name']} ({config['model']['name']})"}.get(
        meta["stage"], config.get("name", root.name))
    paths = retention_report(root, ResultsStore(root).read(), meta["tasks"], title)
    selections = root / "selections.json"
    if meta["stage"] == "compare-strategies" and "csv" in paths and selections.exists():
        import pandas as pd

        chosen = json.loads(selections.read_text())["selections"]
        keys = [f"{s}@{r:g}" for s in config["strategies"] for r in config["ratios"]]
        retention = pd.read_csv(paths["csv"], index_col=0)
        paths |= strategies_report(root, retention, meta["tasks"], {k: chosen[k] for k in keys if k in chosen},
                                   config["name"])
    return paths


__all__ = ["write_report"]
