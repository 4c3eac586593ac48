"""Turns `cargo test` output into a JUnit XML report (CodeBuild test reports).

usage: python3 scripts/junit.py CARGO_TEST_LOG OUTPUT_XML

Each test binary ("Running tests/foo.rs (...)" or "Running unittests src/lib.rs (...)") becomes a
test suite; each "test NAME ... ok|FAILED|ignored" line a test case. Failure output printed under
"---- NAME stdout ----" is attached to its case."""

import re
import sys
import xml.etree.ElementTree as ET

RUNNING = re.compile(r"^\s*Running (?:unittests )?(\S+) \((.+)\)")
DOCTESTS = re.compile(r"^\s*Doc-tests (\S+)")
RESULT = re.compile(r"^test (.+?) \.\.\. (ok|FAILED|ignored)")
FAILURE_START = re.compile(r"^---- (.+?) stdout ----")


def main(log_path: str, out_path: str) -> int:
    lines = open(log_path, encoding="utf-8", errors="replace").read().splitlines()
    suites: list[tuple[str, list[tuple[str, str]]]] = []
    failures: dict[tuple[str, str], list[str]] = {}
    current = None
    capturing = None
    for line in lines:
        if m := RUNNING.match(line):
            binary = m.group(2).rsplit("/", 1)[-1].rsplit("-", 1)[0]
            current = (f"{binary} ({m.group(1)})", [])
            suites.append(current)
            capturing = None
        elif m := DOCTESTS.match(line):
            current = (f"doctests {m.group(1)}", [])
            suites.append(current)
            capturing = None
        elif current is not None and (m := RESULT.match(line)):
            current[1].append((m.group(1), m.group(2)))
        elif current is not None and (m := FAILURE_START.match(line)):
            capturing = (current[0], m.group(1))
            failures[capturing] = []
        elif capturing is not None:
            if line.startswith("failures:") or line.startswith("test result:"):
                capturing = None
            else:
                failures[capturing].append(line)

    root = ET.Element("testsuites")
    total = failed = 0
    for name, cases in suites:
        if not cases:
            continue
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(cases)))
        suite_failures = 0
        for case_name, outcome in cases:
            case = ET.SubElement(suite, "testcase", classname=name, name=case_name)
            if outcome == "FAILED":
                suite_failures += 1
                failure = ET.SubElement(case, "failure", message="test failed")
                failure.text = "\n".join(failures.get((name, case_name), []))
            elif outcome == "ignored":
                ET.SubElement(case, "skipped")
        suite.set("failures", str(suite_failures))
        total += len(cases)
        failed += suite_failures
    root.set("tests", str(total))
    root.set("failures", str(failed))
    ET.ElementTree(root).write(out_path, encoding="utf-8", xml_declaration=True)
    print(f"junit: {total} tests, {failed} failed -> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
