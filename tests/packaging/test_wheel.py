"""The built wheel, installed into a fresh venv, is a working Orchard with nothing from the checkout.

The fresh venv gets only the wheel (``pip install --no-deps --no-index``); its dependencies are read
from this project's venv through a plain path entry (a ``.pth`` line is a directory on ``sys.path``:
the editable install's finder in that directory is *not* run), so nothing here needs the network,
and every import of ``orchard`` must come from the wheel. Each declared dependency is checked
against what is installed (the lock's versions must satisfy ``pyproject.toml``'s ranges).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, stop_tree, wait_for_http

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("src") / "orchard"
    # Build from a copy of the tracked files (a build writes build/ and *.egg-info into its source).
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listed, cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
                           capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (built,) = out.glob("orchard-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    site = next(home.glob("lib/python*/site-packages"))
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(home / "bin" / "python"), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)  # fmt: skip
    return home


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHARD_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ORCHARD_DATA_DIR=str(tmp_path / "data"), ORCHARD_LLM_BASE_URL="http://127.0.0.1:9/v1", HF_HUB_OFFLINE="1")
    return env


def _venv_json(venv: Path, code: str, cwd: Path) -> dict:
    """Run ``code`` with the fresh venv's Python, outside the checkout; the JSON it printed last."""
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=cwd,
                         env=_env(cwd), timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_wheels_only_top_level_package_is_orchard(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"orchard"}
    for module in ("orchard/chains/rag.py", "orchard/agents/agent.py", "orchard/tools/sql.py", "orchard/ui/shell.py",
                   "orchard/ui/pages/chat.py", "orchard/ui/entry/streamlit_app.py", "orchard/api/__init__.py", "orchard/prompts/rag_answer.yaml",
                   "orchard/constitution.yaml"):  # fmt: skip
        assert module in names


def test_declared_dependencies_are_real_and_satisfied(venv: Path, tmp_path: Path) -> None:
    check = (
        "import importlib.metadata as m, json\n"
        "from packaging.requirements import Requirement\n"
        "reqs = [Requirement(r) for r in m.requires('orchard') or []]\n"
        "bad = [str(r) for r in reqs if not r.marker and not r.specifier.contains(m.version(r.name), prereleases=True)]\n"
        "print(json.dumps({'count': len(reqs), 'unsatisfied': bad}))\n"
    )
    result = _venv_json(venv, check, tmp_path)
    assert result["count"] >= 20, result
    assert result["unsatisfied"] == []


def test_imports_come_from_the_wheel_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util, json, orchard, orchard.chains.rag, orchard.agents.agent, orchard.tools, orchard.api\n"
        "print(json.dumps({'orchard': orchard.__file__, 'rag': orchard.chains.rag.__file__,\n"
        "  'top_level_tools': importlib.util.find_spec('tools') is not None,\n"
        "  'top_level_chains': importlib.util.find_spec('chains') is not None}))\n"
    )
    found = _venv_json(venv, code, tmp_path)
    assert found["orchard"].startswith(str(venv)) and found["rag"].startswith(str(venv)), found
    assert not found["top_level_tools"] and not found["top_level_chains"]


def test_orchard_help_runs(venv: Path, tmp_path: Path) -> None:
    out = subprocess.run([str(venv / "bin" / "orchard"), "--help"], capture_output=True, text=True, cwd=tmp_path,
                         env=_env(tmp_path), timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for command in ("ask", "ingest", "app", "api", "keys", "serve"):
        assert command in out.stdout


def _serve_until_healthy(command: list[str], url: str, tmp_path: Path, name: str) -> None:
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env(tmp_path))
    try:
        wait_for_http(url, timeout=120, log=log)
    finally:
        stopped = stop_tree(process, timeout=20)
    assert not stopped.killed, f"{name} did not stop on SIGTERM\n{log.read_text()[-2000:]}"
    assert not stopped.left, f"{name} left {stopped.left} running\n{log.read_text()[-2000:]}"


@pytest.mark.enable_socket
def test_orchard_api_serves_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    port = free_port()
    _serve_until_healthy([str(venv / "bin" / "orchard"), "api", "--port", str(port)], f"http://127.0.0.1:{port}/v1/models",
                         tmp_path, "api")  # fmt: skip


@pytest.mark.enable_socket
def test_orchard_app_serves_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    port = free_port()
    _serve_until_healthy([str(venv / "bin" / "orchard"), "app", "--port", str(port)], f"http://127.0.0.1:{port}/_stcore/health",
                         tmp_path, "app")  # fmt: skip


def test_the_packaged_app_renders_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """Not only Streamlit's health URL: the packaged script runs and draws the welcome page."""
    code = (
        "import json\n"
        "from streamlit.testing.v1 import AppTest\n"
        "from orchard.launch import app_script\n"
        "at = AppTest.from_file(str(app_script()), default_timeout=60).run()\n"
        "print(json.dumps({'script': str(app_script()), 'exception': [str(e) for e in at.exception],\n"
        "  'text': ' '.join(str(m.value) for m in (*at.title, *at.markdown, *at.caption))}))\n"
    )
    page = _venv_json(venv, code, tmp_path)
    assert page["script"].startswith(str(venv)) and page["exception"] == []
    assert "Welcome to Orchard" in page["text"], page["text"][:500]
