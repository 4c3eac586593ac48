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


def main() -> int:
    served = template_routes()
    missing = [
        f"{method} {path}"
        for method, path in interface_routes()
        if (method, path) not in served and ("ANY", path) not in served
    ]
    if missing:
        print("template.yaml does not serve: " + ", ".join(missing), file=sys.stderr)
        return 1
    print(f"{len(interface_routes())} interface routes, all served")
    return 0


if __name__ == "__main__":
    sys.exit(main())
