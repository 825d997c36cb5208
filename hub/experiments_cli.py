"""``p13n experiments list|results``: the hub's experiment results, through its API."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any

from hub.admin_client import api_args, call, fail


def add_parser(sub: Any) -> None:
    exp = sub.add_parser("experiments", help="experiment and holdout results (through the hub)")
    exp_sub = exp.add_subparsers(dest="experiments_command", required=True, metavar="SUBCOMMAND")
    ls = exp_sub.add_parser("list", help="experiments with exposures")
    api_args(ls)
    res = exp_sub.add_parser("results", help="one experiment's results per variant and metric")
    res.add_argument("name")
    res.add_argument("--metrics", default="", help="comma list of metric names (default: all)")
    res.add_argument("--control", default="", help="the variant to compare with (default: the design's)")
    res.add_argument("--method", choices=("fixed", "sequential"), default="fixed")
    res.add_argument("--alpha", type=float, default=0.05)
    res.add_argument("--no-cuped", action="store_true", help="no CUPED adjustment")
    res.add_argument("--format", choices=("table", "json"), default="table")
    api_args(res)


def run(args: argparse.Namespace) -> int:
    if args.experiments_command == "list":
        status, body = call(args, "GET", "/v1/experiments")
        if status != 200:
            return fail("experiments list", status, body)
        for e in body["experiments"]:
            exposures = ", ".join(f"{v} {n}" for v, n in sorted(e["exposures"].items()))
            print(f"{e['name']}\t{exposures}\t{e['first_exposure']} – {e['last_exposure']}\t{e['design']}")
        return 0
    query = {"method": args.method, "alpha": str(args.alpha), "cuped": "false" if args.no_cuped else "true"}
    if args.metrics:
        query["metrics"] = args.metrics
    if args.control:
        query["control"] = args.control
    path = f"/v1/experiments/{urllib.parse.quote(args.name, safe='')}/results?{urllib.parse.urlencode(query)}"
    status, body = call(args, "GET", path)
    if status != 200:
        return fail("experiments results", status, body)
    if args.format == "json":
        print(json.dumps(body, indent=1))
        return 0
    print(table(body))
    return 0


def table(result: dict[str, Any]) -> str:
    """The results as aligned text: one block per metric, a row per variant."""
    lines = [
        f"experiment {result['experiment']}: control {result['design']['control']} ({result['design']['source']}), "
        f"{result['method']}, alpha {result['alpha']}, SRM p = {result['srm']['p_value']:.3g}"
        + ("  MISMATCH" if result["srm"]["flagged"] else "")
    ]
    lines += [f"note: {n}" for n in result["notes"]]
    for metric in result["metrics"]:
        name = metric["name"]
        lines.append("")
        lines.append(f"{name} ({metric['kind']} of {metric['event']}{', guardrail' if metric['guardrail'] else ''})")
        lines.append(f"  {'variant':<16}{'users':>9}{'mean':>11}{'lift':>10}{'interval':>22}{'p':>9}{'holm p':>9}{'win':>7}")
        for variant, entry in result["variants"].items():
            e = entry["metrics"].get(name, {})
            row = f"  {variant:<16}{e.get('users', 0):>9}{e.get('mean', 0.0):>11.4g}"
            if "lift" in e and "error" not in e:
                interval = f"{e['ci'][0] * 100:+.1f}% … {e['ci'][1] * 100:+.1f}%"
                holm = f"{e['p_value_holm']:.4f}" if "p_value_holm" in e else "-"
                row += f"{e['lift'] * 100:>+9.1f}%{interval:>22}{e['p_value']:>9.4f}{holm:>9}{e['chance_to_win'] * 100:>6.1f}%"
            else:
                row += f"  {'control' if entry.get('control') else e.get('error', 'no comparison')}"
            lines.append(row)
    return "\n".join(lines)
