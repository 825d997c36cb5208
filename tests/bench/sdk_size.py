"""The browser SDK's weight as the edge serves it (this edge's config prepended):
raw, gzip level 6 (nginx's usual) and level 9, against the 5 KB compressed budget.

    python tests/bench/sdk_size.py

Last line: one JSON object.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge_agent.app import sdk_script  # noqa: E402
from edge_agent.settings import EdgeSettings  # noqa: E402

BUDGET = 5 * 1024


def main() -> None:
    body = sdk_script(EdgeSettings())
    sizes = {"raw_bytes": len(body), "gzip6_bytes": len(gzip.compress(body, 6)), "gzip9_bytes": len(gzip.compress(body, 9))}
    print(f"SDK as served: {sizes['raw_bytes']} B raw, {sizes['gzip6_bytes']} B gzip -6 (budget {BUDGET} B)")
    print(json.dumps({"bench": "sdk_size", **sizes, "budget_bytes": BUDGET, "within_budget": sizes["gzip6_bytes"] <= BUDGET}))


if __name__ == "__main__":
    main()
