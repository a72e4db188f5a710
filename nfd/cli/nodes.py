"""``kubectl nfd nodes [PATTERN...]``: which nodes have which labels.

``PATTERN`` and ``-L`` take label names or globs, comma-separated or repeated
(``'feature.node.kubernetes.io/cpu-cpuid.*'``, ``-L a,b``); without any, the
table shows how many NFD labels each node has. ``-l`` is a label selector
sent to the API server. ``-o wide`` keeps full label names in one block,
``-o json|yaml`` prints ``[{"name", "labels"}]`` with the chosen labels.

The cluster is read as kubectl reads it: ``--kubeconfig``, else ``$KUBECONFIG``
or ``~/.kube/config``, else the in-cluster service account. Only node
metadata is listed, 500 nodes a page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from nfd.cli import nodetable, output
from nfd.cli.nodetable import Node

METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
PAGE = 500
COUNT_COLUMN = "NFD LABELS"


class ClusterError(Exception):
    """The cluster could not be reached or refused to list nodes."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    nodes = subparsers.add_parser("nodes", help="table of nodes and their feature labels")
    nodes.add_argument(
        "patterns",
        nargs="*",
        metavar="PATTERN",
        help="label names or globs, comma-separated (default: count of NFD labels)",
    )
    nodes.add_argument(
        "-L",
        "--label-columns",
        action="append",
        default=[],
        metavar="LABELS",
        help="more label names or globs for columns, comma-separated",
    )
    nodes.add_argument("-l", "--selector", default="", help="label selector for the nodes")
    nodes.add_argument("-o", "--output", choices=("wide", "json", "yaml"), default=None)
    nodes.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the table (auto: on a terminal, unless NO_COLOR is set)",
    )
    nodes.add_argument("--kubeconfig", default=None, help="kubeconfig file")
    nodes.add_argument("--context", default=None, help="kubeconfig context")
    nodes.set_defaults(func=run)


def api_client(kubeconfig: str | None, context: str | None) -> Any:
    """kubectl's order: --kubeconfig, $KUBECONFIG or ~/.kube/config, in-cluster."""
    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig, context=context)
        env = os.environ.get("KUBECONFIG", "")
        default = Path.home() / ".kube" / "config"
        if env or default.exists() or context:
            first = env.split(os.pathsep)[0] if env else str(default)
            return config.new_client_from_config(config_file=first, context=context)
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException as err:
        raise ClusterError(
            f"no usable cluster configuration ({err}); give --kubeconfig or set KUBECONFIG"
        ) from None
    except OSError as err:
        raise ClusterError(f"cannot read the kubeconfig: {err}") from None


def list_nodes(api: Any, selector: str) -> list[Node]:
    """Every node's name and labels (metadata only), a page at a time."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    core: Any = client.CoreV1Api(api)  # responses read raw: metadata only
    nodes: list[Node] = []
    cont = None
    while True:
        try:
            resp = core.list_node(
                label_selector=selector or None,
                limit=PAGE,
                _continue=cont,
                _preload_content=False,
                _headers={"Accept": METADATA_LIST},
                _request_timeout=30,
            )
        except ApiException as err:
            raise ClusterError(f"listing nodes: {_api_message(err)}") from None
        except HTTPError as err:
            raise ClusterError(f"cannot reach the API server: {err}") from None
        body = json.loads(resp.data)
        for item in body.get("items") or []:
            meta = item.get("metadata") or {}
            nodes.append(
                Node(
                    str(meta.get("name", "")),
                    dict(meta.get("labels") or {}),
                    nodetable.owned_labels(meta.get("annotations") or {}),
                )
            )
        cont = (body.get("metadata") or {}).get("continue")
        if not cont:
            return nodes


def _api_message(err: Any) -> str:
    try:
        message = json.loads(err.body).get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return f"{err.status} {err.reason}: {message}" if message else f"{err.status} {err.reason}"


def use_colour(choice: str, stream: Any) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return output.stream_is_tty(stream)


def counted(nodes: list[Node]) -> list[Node]:
    """Each node with one pseudo-label: how many NFD labels it has (in NFD's namespaces,
    or owned by nfd-master per its annotation, as ``kubectl nfd explain`` counts them)."""
    return [
        Node(
            n.name,
            {COUNT_COLUMN: str(sum(nodetable.is_nfd_label(k) or k in n.owned for k in n.labels))},
        )
        for n in nodes
    ]


def run(args: argparse.Namespace) -> int:
    patterns = nodetable.split_patterns([*args.patterns, *args.label_columns])
    try:
        nodes = list_nodes(api_client(args.kubeconfig, args.context), args.selector)
    except ClusterError as err:
        print(f"kubectl nfd nodes: {err}", file=sys.stderr)
        return 1
    if patterns:
        columns = nodetable.select_columns(nodes, patterns)
        shown = nodes
    else:
        shown, columns = counted(nodes), [COUNT_COLUMN]
    if args.output in ("json", "yaml"):
        document = [
            {"name": n.name, "labels": {c: n.labels[c] for c in columns if c in n.labels}}
            for n in sorted(shown, key=lambda n: n.name)
        ]
        if args.output == "json":
            sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        else:
            sys.stdout.write(output.to_yaml(document))
        return 0
    if patterns and not columns:
        print(f"kubectl nfd nodes: no label matches {', '.join(patterns)}", file=sys.stderr)
    width = shutil.get_terminal_size((80, 24)).columns
    sys.stdout.write(
        nodetable.render_nodes(
            shown,
            columns,
            width=width,
            wide=args.output == "wide",
            colour=use_colour(args.color, sys.stdout),
        )
    )
    return 0
