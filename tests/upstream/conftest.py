"""Shared by the upstream-suite modules: the markers those suites use, and a per-class summary.

`pytest tests/upstream` ends with a table of passed / failed / skipped / xfailed
tests per test class (the counts docs/conformance.md quotes); subtests are not counted separately.
"""

import collections

# Markers the upstream suites put on their tests (their own conftest.py, which is not copied, registers them).
UPSTREAM_MARKERS = (
    "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test", "torch_export_test",
    "generate", "is_training", "training", "bitsandbytes", "quanto", "lora", "context_parallel", "torch_compile",
    "group_offload", "single_file", "cpu_offload", "attention", "memory", "ip_adapter", "cache",
)
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed")
_outcomes: dict[str, str] = {}


def pytest_configure(config):
    for marker in UPSTREAM_MARKERS:
        config.addinivalue_line("markers", f"{marker}: set by an upstream common test suite")


def pytest_runtest_logreport(report):
    if "/upstream/" not in report.nodeid.replace("\\", "/") or type(report).__name__ != "TestReport":
        return  # only this folder's tests, and not the per-subtest reports
    if hasattr(report, "wasxfail"):
        outcome = "xpassed" if report.passed else "xfailed"
    elif report.failed:
        outcome = "failed"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        return
    if _outcomes.get(report.nodeid) != "failed":  # a teardown error after a pass still fails the test
        _outcomes[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter):
    if not _outcomes:
        return
    per_class = collections.defaultdict(collections.Counter)
    for nodeid, outcome in _outcomes.items():
        parts = nodeid.split("::")
        per_class[parts[1] if len(parts) > 2 else parts[0]][outcome] += 1
    write = terminalreporter.write_line
    write("\nupstream suites, tests per class: | class | " + " | ".join(OUTCOMES) + " |")
    for name, counts in sorted(per_class.items()):
        write(f"| {name} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
