"""The shape of the house, checked on every run: what the issue of re-plumbing asked a `grep` to show
stays true as the code changes."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[3]
SERVICES = ROOT / "services"
NAMES = ("catalog", "intake", "joint_review", "elicense", "delivery", "evaluation")
FRAMEWORKS = ("nameko", "grpc", "mongoengine", "pymongo", "minio", "kombu", "eventlet", "opentelemetry")


def _code_files(*folders):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "tests" not in path.parts:
                yield path


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_handlers_know_no_store_internals():
    """Persistence is behind each service's store: no handlers.py imports mongoengine or a
    document class, or publishes an outbox itself."""
    found = []
    for name in NAMES:
        path = SERVICES / name / "handlers.py"
        text = path.read_text(encoding="utf-8")
        for pattern in (r"\bmongoengine\b", r"\bpymongo\b", r"\b\w+Doc\b", r"\bflush_outbox\b"):
            found += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not found, found


def test_only_the_settings_module_reads_the_environment():
    readers = []
    for path in _code_files("services", "infra", "tools"):
        if path == SERVICES / "common" / "config.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"os\.environ|os\.getenv|getenv\(", text):
            readers.append(str(path.relative_to(ROOT)))
    assert not readers, readers


def test_services_never_import_each_other():
    crossing = []
    for name in NAMES:
        for path in _code_files(f"services/{name}"):
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] in NAMES and parts[1] != name:
                    crossing.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not crossing, crossing


def test_domain_modules_import_no_framework():
    impure = []
    for name in NAMES:
        for path in (SERVICES / name).glob("*.py"):
            if path.stem not in ("domain", "clock", "definitions", "resolution", "notice"):
                continue
            for module in _imports(path):
                if module.split(".")[0] in FRAMEWORKS:
                    impure.append(f"{path.relative_to(ROOT)} imports {module}")
    for path in (SERVICES / "common" / "forms.py", SERVICES / "common" / "china.py", SERVICES / "common" / "registry.py",
                 SERVICES / "desk" / "rules.py"):
        if path.exists():
            impure += [f"{path.relative_to(ROOT)} imports {m}" for m in _imports(path) if m.split(".")[0] in FRAMEWORKS]
    assert not impure, impure


def test_workers_sweep_their_outbox_with_the_one_sweeper():
    """One sweeper component (services.common.worker.OutboxSweeper), no copied timers."""
    for name in NAMES:
        text = (SERVICES / name / "worker.py").read_text(encoding="utf-8")
        assert "OutboxSweeper(" in text, f"services/{name}/worker.py has no OutboxSweeper"
        assert "sweep_outbox(" not in text, f"services/{name}/worker.py still sweeps by hand"


def test_the_registry_names_every_service_folder():
    from services.common.registry import NAMES as REGISTERED
    from services.common.registry import SERVICES as ENTRIES
    folders = {p.parent.name for p in SERVICES.glob("*/worker.py")} - {"common"}
    assert set(REGISTERED) == folders
    for entry in ENTRIES:
        module, cls = entry.worker.split(":")
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), entry
        assert f"class {cls}" in (ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")


def test_a_desk_talks_to_the_platform_only_through_the_broker():
    """services/desk is a department's own adapter: plain kombu, no nameko or eventlet, no database or
    object store client, and no service's code (it knows the platform by the desk protocol and the
    protos only)."""
    forbidden = ("nameko", "eventlet", "mongoengine", "pymongo", "minio", "grpc")
    found = []
    for path in _code_files("services/desk"):
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] in forbidden or (parts[0] == "services" and len(parts) > 1 and parts[1] in NAMES) \
                    or module.startswith(("services.common.mongo", "services.common.blobs", "services.common.worker")):
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not found, found
    assert (SERVICES / "desk" / "__main__.py").exists()
