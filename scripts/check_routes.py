"""Fails unless every route of the external interface (../shared/interface.md, or the copy in
docs/interface-routes.txt when shared/ is absent) is served by template.yaml."""

import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
interface = root.parent / "shared" / "interface.md"
pinned = root / "docs" / "interface-routes.txt"


def interface_routes() -> list[tuple[str, str]]:
    text = interface.read_text() if interface.exists() else pinned.read_text()
    return sorted(set(re.findall(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`]*)`", text)))


def template_routes() -> set[tuple[str, str]]:
    text = (root / "template.yaml").read_text()
    routes = set()
    for method, path in re.findall(r"Method:\s*(\w+)\s*\n\s*Path:\s*(\S+)", text):
        routes.add((method.upper(), path))
    return routes


def served_by(served: set[tuple[str, str]], method: str, path: str) -> bool:
    """Exactly, or by a greedy `{proxy+}` route (API Gateway: one or more further segments)."""
    for served_method, served_path in served:
        if served_method not in (method, "ANY"):
            continue
        if served_path == path:
            return True
        if served_path.endswith("/{proxy+}"):
            prefix = served_path[: -len("{proxy+}")]
            if path.startswith(prefix) and len(path) > len(prefix):
                return True
    return False


# Interface routes whose open issue has not landed yet, with that issue. A route listed here that
# the template does serve fails the check too, so the list cannot outlive the work.
PENDING: dict[str, str] = {}


def main() -> int:
    served = template_routes()
    routes = [f"{method} {path}" for method, path in interface_routes()]
    missing = [
        route
        for route in routes
        if not served_by(served, *route.split(" ", 1)) and route not in PENDING
    ]
    stale = [route for route in PENDING if served_by(served, *route.split(" ", 1))]
    if missing:
        print("template.yaml does not serve: " + ", ".join(missing), file=sys.stderr)
    if stale:
        print("served now, remove from PENDING: " + ", ".join(stale), file=sys.stderr)
    if missing or stale:
        return 1
    pending = [route for route in routes if route in PENDING]
    print(f"{len(routes) - len(pending)} interface routes served", end="")
    print("".join(f"; {route} pending ({PENDING[route]})" for route in pending))
    return 0


if __name__ == "__main__":
    sys.exit(main())
