"""``kubectl nfd explain NODE [LABEL]``: where each of a node's labels came from, and
why a label is missing, as the leading nfd-master sees it now.

The master answers ``GET /explain/<node>[?label=NAME]`` on its metrics port from what
it holds for the node (the worker's last labels and features, the NodeFeatureRules,
GPU marking). By default the command reaches it through the API server's service
proxy, ``/api/v1/namespaces/<ns>/services/<service>:<port>/proxy/explain/<node>``,
with the cluster read as kubectl reads it (the user needs ``get`` on
``services/proxy``); ``--master-url`` talks to a master directly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any
from urllib.parse import quote, unquote

from nfd.cli import output

DEFAULT_NAMESPACE = "node-feature-discovery"  # deploy/base
DEFAULT_SERVICE = "nfd-master"
DEFAULT_PORT = "metrics"  # the Service's port name (8081)
FNK = "feature.node.kubernetes.io/"
TIMEOUT = 30


class ExplainError(Exception):
    """The master could not be reached or refused the question."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "explain", help="where a node's labels came from, and why a label is missing"
    )
    cmd.add_argument("node", metavar="NODE")
    cmd.add_argument("label", nargs="?", default=None, metavar="LABEL")
    output.add_output_option(cmd, "table")
    cmd.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE, help="nfd-master namespace")
    cmd.add_argument("--service", default=DEFAULT_SERVICE, help="nfd-master Service")
    cmd.add_argument(
        "--port", default=DEFAULT_PORT, help="the Service's metrics port (name or number)"
    )
    cmd.add_argument(
        "--master-url",
        default=None,
        help="ask nfd-master directly at this URL (http://HOST:METRICS_PORT), not via the API",
    )
    cmd.add_argument("--kubeconfig", default=None, help="kubeconfig file")
    cmd.add_argument("--context", default=None, help="kubeconfig context")
    cmd.set_defaults(func=run)


def explain_path(node: str, label: str | None) -> str:
    path = "explain/" + quote(node, safe="")
    if label is not None:
        path += "?label=" + quote(label, safe="")
    return path


def proxy_path(namespace: str, service: str, port: str, node: str, label: str | None) -> str:
    """The API server's service proxy path to the master's /explain."""
    return (
        f"/api/v1/namespaces/{quote(namespace, safe='')}/services/"
        f"{quote(service, safe='')}:{quote(str(port), safe='')}/proxy/" + explain_path(node, label)
    )


def fetch_direct(url: str, node: str, label: str | None) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    target = url.rstrip("/") + "/" + explain_path(node, label)
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT) as resp:
            return _document(resp.read())
    except urllib.error.HTTPError as err:
        raise ExplainError(f"{err.code}: {err.read().decode(errors='replace').strip()}") from None
    except (urllib.error.URLError, OSError) as err:
        raise ExplainError(f"cannot reach nfd-master at {url}: {err}") from None


def fetch_proxy(api: Any, path: str) -> dict[str, Any]:
    """GET ``path`` (with its query) from the API server."""
    from urllib3.exceptions import HTTPError

    resource, _, query = path.partition("?")
    params = [tuple(p.split("=", 1)) for p in query.split("&") if "=" in p]
    try:
        method, url, headers, body, post = api.param_serialize(
            "GET",
            resource,
            query_params=[(k, unquote(v)) for k, v in params],
            header_params={"Accept": "application/json, */*"},
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, headers, body, post, _request_timeout=TIMEOUT)
        data = resp.read()
    except HTTPError as err:
        raise ExplainError(f"cannot reach the API server: {err}") from None
    if not 200 <= resp.status < 300:
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        raise ExplainError(f"{resp.status}: {_message(text)}")
    return _document(data)


def _message(body: str) -> str:
    """The API server's Status message, or the master's own text."""
    try:
        status = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return body.strip()


def _document(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise ExplainError(f"not an nfd-master answer: {data[:200]!r}") from None
    if not isinstance(doc, dict) or "labels" not in doc:
        raise ExplainError(f"not an nfd-master answer: {data[:200]!r}")
    return doc


def origin_text(entry: dict[str, Any], namespace: str = "") -> str:
    """One label's origin in words (the JSON has it field by field); a NodeFeature in
    ``namespace`` (the master's) by its name alone."""
    kind = entry.get("origin")
    if kind == "worker":
        source = entry.get("source", "")
        if source == "local":
            where = local_place(entry)
            if not where:
                return "worker/local: features.d or hook"
            others = len(entry.get("alsoSetBy") or [])
            return where + (f" (+{others})" if others else "")
        if source == "custom":
            return "worker/custom: rule or other"
        return f"worker/{source}"
    if kind == "NodeFeatureRule":
        if "rule" in entry:
            return f"rule {entry.get('nodeFeatureRule', '?')}/{entry['rule']}"
        return "rule labelsTemplate"
    if kind == "gpu-marking":
        return str(entry.get("detail") or "GPU marking")
    if kind == "NodeFeature":
        where = str(entry.get("nodeFeature", "?"))
        if namespace and where.startswith(namespace + "/"):
            where = where[len(namespace) + 1 :]
        text = f"NodeFeature {where}"
        overridden = len(entry.get("overrides") or [])
        return text + (f" (+{overridden})" if overridden else "")
    return str(kind)


def legend(labels: list[dict[str, Any]], namespace: str = "") -> str:
    """What the table's short origins mean, for those it shows."""
    kinds = {e.get("origin") for e in labels}
    sources = {e.get("source") for e in labels}
    lines = []
    if sources - {"local", "custom", None}:
        lines.append(
            "worker/SOURCE: sent by nfd-worker's SOURCE source; the feature is the rest of the name"
        )
    local = [e for e in labels if e.get("source") == "local"]
    if any(local_place(e) for e in local):
        lines.append("features.d/FILE, source.d/HOOK: nfd-worker's local source, that file or hook")
    if any(not local_place(e) for e in local):
        lines.append(
            "worker/local: a features.d file or hook the worker did not name "
            "(`explain NODE LABEL` says why)"
        )
    if "NodeFeatureRule" in kinds:
        lines.append("rule NFR/RULE: rule RULE of NodeFeatureRule NFR")
    if "NodeFeature" in kinds:
        if namespace:
            lines.append(
                "NodeFeature [NS/]NAME: spec.labels of that NodeFeature object "
                f"(no NS: {namespace})"
            )
        else:
            lines.append("NodeFeature NS/NAME: spec.labels of that NodeFeature object")
    overridden = any(e.get("overrides") for e in labels if e.get("origin") == "NodeFeature")
    if overridden or any(e.get("alsoSetBy") for e in local):
        lines.append("(+N): N others gave it too and lost; `explain NODE LABEL` names them")
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def local_place(entry: dict[str, Any]) -> str:
    """``features.d/NAME`` or ``source.d/NAME`` of a local label; "" if not reported."""
    if entry.get("file"):
        return f"features.d/{entry['file']}"
    if entry.get("hook"):
        return f"source.d/{entry['hook']}"
    return ""


def _short(name: str) -> str:
    return name.removeprefix(FNK)


def long_origin(entry: dict[str, Any]) -> str:
    """One label's origin spelt out (``explain NODE LABEL``)."""
    kind = entry.get("origin")
    if kind == "worker":
        source = entry.get("source", "")
        if source == "local":
            if entry.get("file"):
                return f"nfd-worker's local source: features.d file {entry['file']}"
            if entry.get("hook"):
                return f"nfd-worker's local source: source.d hook {entry['hook']}"
            return f"nfd-worker's local source: {entry.get('detail') or 'a file or hook'}"
        if source == "custom":
            return "nfd-worker: a custom source rule, or another label the worker sent"
        return f"nfd-worker's {source} source, feature {entry.get('feature', '')}"
    if kind == "NodeFeature":
        return f"spec.labels of NodeFeature {entry.get('nodeFeature', '?')}"
    if kind == "NodeFeatureRule" and "rule" in entry:
        return f"rule {entry['rule']} of NodeFeatureRule {entry.get('nodeFeatureRule', '?')}"
    return origin_text(entry)


def fit(text: str, width: int) -> tuple[str, bool]:
    """Each line clipped to ``width`` columns (with "..."); whether any was."""
    out, clipped = [], False
    for line in text.splitlines():
        if width > 10 and len(line) > width:
            line, clipped = line[: width - 3] + "...", True
        out.append(line)
    return "\n".join(out) + "\n", clipped


def render_table(doc: dict[str, Any], width: int = 0) -> str:
    """The human-readable answer; with ``width``, table rows fit that many columns."""
    labels = doc.get("labels") or []
    parts = []
    if "label" not in doc:
        head = f"Node {doc.get('node')}: {len(labels)} labels"
        if any(e["name"].startswith(FNK) for e in labels):
            head += f" ({FNK} left out of names)"
        parts.append(head + "\n")
        ns = str(doc.get("namespace") or "")
        rows = [(_short(e["name"]), _clip(str(e["value"])), origin_text(e, ns)) for e in labels]
        rows, shortened = _narrow_names(rows, width)
        body, clipped = fit(output.table(("LABEL", "VALUE", "ORIGIN"), rows), width)
        clipped = clipped or shortened
        parts.append(body if rows else "none\n")
        if clipped:
            parts.append("(rows clipped to the terminal's width: -o yaml shows them whole)\n")
        parts.append(legend(labels, ns))
        rejected = doc.get("rejected") or []
        if rejected:
            parts.append(f"\nRefused by the master's label policy ({len(rejected)}):\n")
            parts.append(
                output.table(
                    ("KIND", "NAME", "REASON"),
                    [(r["kind"], _short(r["name"]), r["reason"]) for r in rejected],
                )
            )
    else:
        parts.append(render_label(doc["label"]))
    gpu = doc.get("gpuMarking") or {}
    if not gpu.get("enabled") and gpu.get("hardware"):
        parts.append("\nThe worker sees an NVIDIA GPU, but GPU marking is off on nfd-master.\n")
    for skipped in doc.get("skippedRules") or []:
        parts.append(
            f"\nRule {skipped.get('rule')} (NodeFeatureRule {skipped.get('nodeFeatureRule')}) "
            f"is skipped: {skipped.get('reason')}\n"
        )
    return "".join(parts)


def render_label(one: dict[str, Any]) -> str:
    lines = []
    name = one["name"]
    if one.get("set"):
        lines.append(f"{name}={one.get('value')}")
        origin = one.get("origin") or {}
        lines.append(f"  origin: {long_origin(origin)}")
        if origin.get("origin") == "worker" and origin.get("nodeFeature"):
            lines.append(f"  published in the worker's NodeFeature {origin['nodeFeature']}")
        also = [local_place(o) for o in origin.get("alsoSetBy") or []]
        if also:
            lines.append(
                "  it overrides (features.d files in name order, then source.d hooks; "
                "the last one wins):"
            )
            lines.extend(f"    {place}" for place in also if place)
        overrides = origin.get("overrides") or []
        if overrides:
            lines.append("  it overrides (the last NodeFeature in upstream's merge order wins):")
        for other in overrides:
            who = (
                f"NodeFeature {other['nodeFeature']}"
                if "nodeFeature" in other
                else "nfd-worker (gRPC)"
            )
            lines.append(f"    {who}: {other.get('value')!r}")
    else:
        lines.append(f"{name}: not set on this node")
        if one.get("rejected"):
            lines.append(f"  refused by the master's label policy: {one['rejected']}")
    origin = one.get("origin") or {}
    for rule in one.get("rulesThatSetIt") or []:
        if rule.get("rule") == origin.get("rule") and rule.get("nodeFeatureRule") == origin.get(
            "nodeFeatureRule"
        ):
            continue  # the origin line says it
        lines.append(
            f"  also set by rule {rule.get('rule')} "
            f"of NodeFeatureRule {rule.get('nodeFeatureRule')}"
        )
    for rule in one.get("rulesThatDidNotMatch") or []:
        lines.append(
            f"  rule {rule.get('rule')} (NodeFeatureRule {rule.get('nodeFeatureRule')}) "
            f"could set it but did not match:"
        )
        lines.append(f"    {rule.get('failed')}")
    if not one.get("set") and not one.get("rulesThatDidNotMatch") and not one.get("rejected"):
        lines.append(
            "  no NodeFeatureRule names it, and neither the worker nor a NodeFeature object gave it"
        )
    return "\n".join(lines) + "\n"


def _narrow_names(
    rows: list[tuple[str, str, str]], width: int
) -> tuple[list[tuple[str, str, str]], bool]:
    """Rows whose label names are clipped so that VALUE and ORIGIN (what explain is asked
    for) fit ``width`` columns, names keeping at least 16; whether any was clipped."""
    if width <= 10 or not rows:
        return rows, False
    value = max(len("VALUE"), *(len(r[1]) for r in rows))
    origin = max(len("ORIGIN"), *(len(r[2]) for r in rows))
    room = max(width - value - origin - 4, 16)
    if all(len(r[0]) <= room for r in rows):
        return rows, False
    return [(_clip(r[0], room), r[1], r[2]) for r in rows], True


def _clip(value: str, width: int = 24) -> str:
    return value if len(value) <= width else value[: width - 3] + "..."


def run(args: argparse.Namespace) -> int:
    try:
        if args.master_url:
            doc = fetch_direct(args.master_url, args.node, args.label)
        else:
            from nfd.cli.nodes import ClusterError, api_client

            try:
                api = api_client(args.kubeconfig, args.context)
            except ClusterError as err:
                raise ExplainError(str(err)) from None
            path = proxy_path(args.namespace, args.service, args.port, args.node, args.label)
            doc = fetch_proxy(api, path)
    except ExplainError as err:
        print(f"kubectl nfd explain: {err}", file=sys.stderr)
        return 1
    fmt = output.choose_format(args.output, output.stream_is_tty(sys.stdout), "table")
    sys.stdout.write(
        output.render(
            doc,
            fmt,
            lambda d: json.dumps(d, indent=2, sort_keys=True) + "\n",
            lambda d: render_table(d, shutil.get_terminal_size((80, 24)).columns),
        )
    )
    return 0
