"""The contracts (protos/): `buf lint` passes under protos/buf.yaml, `buf breaking` passes against
the last release (protos/releases/v<N>.binpb), and a changed field number is caught. buf is the one
`make contracts` installs into tools/buf."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROTOS = ROOT / "protos"
BUF = ROOT / "tools" / "buf" / "node_modules" / ".bin" / "buf"
# a field of a message: `[repeated] type name = number` then `;` or `[options]`
FIELD = re.compile(r"^(\s+(?:repeated\s+)?[\w.]+\s+(\w+)\s*=\s*)(\d+)(\s*[;\[])", re.M)


def _buf(*args):
    if not BUF.exists():
        pytest.fail(f"buf is not installed at {BUF.relative_to(ROOT)}: run `make contracts`")
    return subprocess.run([str(BUF), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _last_release():
    releases = sorted(PROTOS.glob("releases/v*.binpb"), key=lambda p: int(p.stem[1:]))
    assert releases, "no release image in protos/releases/ (see protos/releases/README.md)"
    return releases[-1]


def test_the_protos_pass_lint():
    run = _buf("lint", str(PROTOS))
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_protos_keep_the_last_release():
    run = _buf("breaking", str(PROTOS), "--against", str(_last_release()))
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_changed_field_number_is_a_breaking_change(tmp_path):
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy)
    proto = copy / "onething" / "common" / "v1" / "common.proto"
    field = FIELD.search(proto.read_text())
    assert field, f"no field found in {proto.name}"
    name, number = field.group(2), int(field.group(3))
    proto.write_text(FIELD.sub(lambda m: f"{m.group(1)}{number + 1000}{m.group(4)}",
                               proto.read_text(), count=1))

    run = _buf("breaking", str(copy), "--against", str(_last_release()), "--error-format=json")

    assert run.returncode != 0, "buf breaking passed a changed field number"
    assert "FIELD_NO_DELETE" in run.stdout, run.stdout + run.stderr
    assert f'Previously present field \\"{number}\\" with name \\"{name}\\"' in run.stdout, run.stdout
