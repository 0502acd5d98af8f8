"""The command line: ``python -m k8s_check {lint,render,check-crds,check-dashboard} …``;
exits 1 on a failure.
"""

import argparse
import sys

from k8s_check.crds import check_crds
from k8s_check.dashboard import check_dashboard
from k8s_check.lint import lint
from k8s_check.render import render
from k8s_check.values import user_values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="k8s-check helm tool")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("lint", "render"):
        p = sub.add_parser(name)
        p.add_argument("--chart", required=True)
        p.add_argument("--values", action="append")
        p.add_argument("--set", action="append")
        p.add_argument("--release", default="langgraph-kafka")
        p.add_argument("--namespace", default="langgraph")
        p.add_argument("--kube-version", default="1.30.0")
        p.add_argument("--out")
    p = sub.add_parser("check-crds")
    p.add_argument("dirs", nargs="+")
    p = sub.add_parser("check-dashboard")
    p.add_argument("paths", nargs="+")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == "check-crds":
        return check_crds(args.dirs)
    if args.command == "check-dashboard":
        return check_dashboard(args.paths)
    values = user_values(args.values, args.set)
    if args.command == "lint":
        return lint(args.chart, values, args.namespace, args.kube_version)
    return render(args.chart, values, args.release, args.namespace, args.out)


if __name__ == "__main__":
    sys.exit(main())
