"""Escape attempts against the ``python`` tool's sandbox, written the way an attacker would write them.

Each attack ends by asserting its own success and printing ESCAPED; each must instead be refused or
stopped with a message, with no side effect: no file written outside the scratch folder (a world-
writable folder in /tmp, the home folder, the repo), no secret in the output (a ``.env`` file, the
parent's environment, /etc/passwd), no process killed (the parent, a process of the sandbox's own
user). Every attack runs against the full sandbox and against each layer alone (``_layers``), so each
is shown to be stopped twice: by the OS layer (network and PID namespaces, chroot, nobody, rlimits)
and by the interpreter layer (the audit hook). With the hook alone the sandbox runs as root, so the
attacks that would take this test session with them if the hook had a hole are left out there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchard.tools.python_sandbox import SandboxLimits, _namespaces_prefix, run_python

REPO = Path(__file__).resolve().parents[2]
ALL, OS_ONLY, HOOK_ONLY = ("os", "hook"), ("os",), ("hook",)
LAYERS = {"all": ALL, "os-only": OS_ONLY, "hook-only": HOOK_ONLY}
PASSWD_LINE = "root:x:0:0"
CTYPES_SO = importlib.util.find_spec("_ctypes").origin
SOCKET_SO = importlib.util.find_spec("_socket").origin

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's OS layer is Linux's")


@dataclass
class Targets:
    marker: Path  # in a world-writable folder: even `nobody` could create it outside the chroot
    home_file: Path
    repo_file: Path
    env_file: Path
    secret: str
    victim: subprocess.Popen  # a process of the sandbox's own user (nobody, as root)

    def fill(self, code: str) -> str:
        for name, value in (("MARKER", self.marker), ("HOMEFILE", self.home_file), ("REPOFILE", self.repo_file),
                            ("ENVFILE", self.env_file), ("CTYPES_SO", CTYPES_SO), ("SOCKET_SO", SOCKET_SO)):
            code = code.replace(name, repr(str(value)))
        return code.replace("VICTIM", str(self.victim.pid)).replace("PARENT", str(os.getpid()))


@pytest.fixture
def targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    secret = f"sk-orchard-{uuid.uuid4().hex}"
    env_file = tmp_path / ".env"
    env_file.write_text(f"OPENAI_API_KEY={secret}\n")
    monkeypatch.setenv("ORCHARD_TEST_SECRET", secret)  # in the parent's environment too
    open_dir = Path(tempfile.mkdtemp(prefix="orchard-escape-"))
    open_dir.chmod(0o777)
    name = f"orchard-escape-{uuid.uuid4().hex[:8]}"
    nobody = {"user": 65534, "group": 65534} if os.geteuid() == 0 else {}
    victim = subprocess.Popen(["sleep", "60"], **nobody)
    found = Targets(open_dir / "pwned", Path.home() / name, REPO / name, env_file, secret, victim)
    yield found
    victim_alive = victim.poll() is None
    victim.kill()
    victim.wait()
    leaked = [p for p in (found.marker, found.home_file, found.repo_file) if p.exists()]
    for p in (found.home_file, found.repo_file):
        p.unlink(missing_ok=True)
    shutil.rmtree(open_dir, ignore_errors=True)
    assert not leaked, f"the sandbox wrote outside its folder: {leaked}"
    assert victim_alive, "the sandbox killed a process outside it"


def assert_contained(result, targets: Targets, stopped: bool = True) -> None:
    text = result.output + (result.error or "")
    if stopped:
        assert not result.ok, result
        assert result.error, "stopped without a message"
    assert "ESCAPED" not in result.output
    assert targets.secret not in text
    assert PASSWD_LINE not in text
    for path in (targets.marker, targets.home_file, targets.repo_file):
        assert not path.exists(), f"{path} was written"


WALK_CLASSES = """
def subclasses():
    seen, todo = [], [object]
    while todo:
        cls = todo.pop()
        for sub in type.__subclasses__(cls):
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen
def find(name):
    found = [c for c in subclasses() if c.__name__ == name]
    assert found, f"no {name} in reach"
    return found[0]
"""

# (id, program, what the full sandbox does: "refused" by the hook, or "stopped" by the OS layer)
ATTACKS = [
    ("write-tmp", "open(MARKER, 'w').write('pwned')\nprint('ESCAPED')", "refused"),
    ("write-home", "open(HOMEFILE, 'w').write('pwned')\nprint('ESCAPED')", "refused"),
    ("write-repo", "open(REPOFILE, 'w').write('pwned')\nprint('ESCAPED')", "refused"),
    ("read-passwd", "print(open('/etc/passwd').read())", "refused"),
    ("read-dotenv", "print(open(ENVFILE).read())", "refused"),
    ("dotdot", "print(open('../../../../../etc/passwd').read())", "refused"),
    ("os.system", "import os\nassert os.system('touch ' + MARKER) == 0\nprint('ESCAPED')", "refused"),
    ("subprocess.run", "import subprocess\nsubprocess.run(['touch', MARKER], check=True)\nprint('ESCAPED')", "refused"),
    ("os.popen", "import os\nassert os.popen('touch ' + MARKER + ' && echo ok').read() == 'ok\\n'\nprint('ESCAPED')", "refused"),
    ("os.fork", "import os\npid = os.fork()\nif pid == 0:\n    open(MARKER, 'w').write('child')\n    os._exit(0)\n"
                "os.waitpid(pid, 0)\nprint('ESCAPED')", "refused"),
    ("os.execv", "import os\nos.execv('/bin/sh', ['sh', '-c', 'touch ' + MARKER])", "refused"),
    ("os.posix_spawn", "import os\npid = os.posix_spawn('/usr/bin/touch', ['touch', MARKER], {})\n"
                       "assert os.waitpid(pid, 0)[1] == 0\nprint('ESCAPED')", "refused"),
    ("pty.spawn", "import pty\npty.spawn(['touch', MARKER])\nprint('ESCAPED')", "refused"),
    ("__import__", "assert __import__('os').system('touch ' + MARKER) == 0\nprint('ESCAPED')", "refused"),
    # importlib's Python-level import raises no "import" event: the chroot has no file to find (and
    # without the chroot, reading the module's source is refused by the hook)
    ("importlib", "import importlib\nimportlib.import_module('subprocess').run(['touch', MARKER], check=True)\n"
                  "print('ESCAPED')", "stopped"),
    ("builtins-import", "getattr(__builtins__, '__import__')('subprocess').run(['touch', MARKER], check=True)\n"
                        "print('ESCAPED')", "refused"),
    ("subclasses-Popen", WALK_CLASSES + "find('Popen')(['touch', MARKER]).wait()\nprint('ESCAPED')", "stopped"),
    ("subclasses-wrap_close", WALK_CLASSES + "system = find('_wrap_close').__init__.__globals__['system']\n"
                                             "assert system('touch ' + MARKER) == 0\nprint('ESCAPED')", "refused"),
    ("subclasses-FileIO-read", WALK_CLASSES + "print(find('FileIO')('/etc/passwd').read().decode())", "refused"),
    ("subclasses-FileIO-write", WALK_CLASSES + "find('FileIO')(MARKER, 'w').write(b'pwned')\nprint('ESCAPED')", "refused"),
    ("ctypes", "import ctypes\nassert ctypes.CDLL(None).system(b'touch ' + MARKER.encode()) == 0\nprint('ESCAPED')", "refused"),
    ("_ctypes", "import _ctypes\nprint('ESCAPED', _ctypes.dlopen)", "refused"),
    ("_imp.create_dynamic-ctypes", "import _imp, sys\nspec = type(sys.__spec__)('_ctypes', None, origin=CTYPES_SO)\n"
                                   "print('ESCAPED', _imp.create_dynamic(spec))", "refused"),
    ("posix.system", "import posix\nassert posix.system('touch ' + MARKER) == 0\nprint('ESCAPED')", "refused"),
    ("os.open-creat", "import os\nos.close(os.open(MARKER, os.O_WRONLY | os.O_CREAT))\nprint('ESCAPED')", "refused"),
    ("io.open_code", "import io\nprint(io.open_code('/etc/passwd').read().decode())", "refused"),
    ("proc-self-environ", "print(open('/proc/self/environ').read())", "refused"),
    ("proc-parent-environ", "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())", "refused"),
    ("proc-self-mem", "f = open('/proc/self/mem', 'r+b')\nprint('ESCAPED')", "refused"),
    ("symlink", "import os\nos.symlink('/etc/passwd', 'p')\nprint(open('p').read())", "refused"),
    ("hardlink", "import os\nos.link('/etc/passwd', 'p')\nprint(open('p').read())", "refused"),
    ("chdir", "import os\nos.chdir('/')\nprint(open('etc/passwd').read())", "refused"),
    ("dir_fd", "import os\nfd = os.open('/etc', os.O_RDONLY)\n"
               "print(os.read(os.open('passwd', os.O_RDONLY, dir_fd=fd), 100000).decode())", "refused"),
    ("chroot-escape", "import os\nos.mkdir('x')\nos.chroot('x')\nfor _ in range(30):\n    os.chdir('..')\n"
                      "os.chroot('.')\nprint(open('/etc/passwd').read())", "stopped"),
    ("setuid-root", "import os\nos.setuid(0)\nprint(open('/etc/shadow').read(), 'ESCAPED')", "stopped"),
    ("raise-rlimits", "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))\nprint('ESCAPED')", "refused"),
    ("marshal-code", "import marshal\nexec(marshal.loads(marshal.dumps(compile('print(1)', 'x', 'exec'))))\n"
                     "print('ESCAPED')", "refused"),
    ("code-replace", "c = (lambda: 0).__code__.replace(co_consts=())\nprint('ESCAPED', eval(c))", "refused"),
    ("input", "print('ESCAPED', input())", "refused"),
    # -- removing or fooling the audit hook, then reading /etc/passwd
    ("add-audit-hook", "import sys\nsys.addaudithook(lambda *a: None)\nprint(open('/etc/passwd').read())", "refused"),
    ("gc-find-hook", "import gc\nhook = [f for f in gc.get_objects() if getattr(f, '__name__', '') == 'hook'][0]\n"
                     "hook.__code__ = (lambda *a: None).__code__\nprint(open('/etc/passwd').read())", "refused"),
    ("create_builtin-gc", "import _imp, sys\ngc = _imp.create_builtin(type(sys.__spec__)('gc', None, origin='built-in'))\n"
                          "print(len(gc.get_referrers(open)))\nprint(open('/etc/passwd').read())", "refused"),
    ("frames-find-hook", "import sys\nf = sys._getframe()\nhooks = []\nwhile f:\n"
                         "    hooks += [v for v in f.f_locals.values() if getattr(v, '__name__', '') == 'hook']\n"
                         "    f = f.f_back\nhooks[0].__defaults__ = ('/',) + hooks[0].__defaults__[1:]\n"
                         "print(open('/etc/passwd').read())", "stopped"),
    ("tb-frame-of-hook", "try:\n    open('/etc/passwd')\nexcept PermissionError as e:\n    tb = e.__traceback__\n"
                         "    while tb.tb_next:\n        tb = tb.tb_next\n    frame = tb.tb_frame\n"
                         "    frame.f_locals['scratch'] = '/'\n    frame.f_globals['scratch'] = '/'\n"
                         "print(open('/etc/passwd').read())", "refused"),
    ("replace-code-of-functions", "import os\nfor f in list(vars(os).values()):\n    if callable(f) and hasattr(f, '__code__'):\n"
                                  "        f.__code__ = (lambda *a, **k: True).__code__\nprint(open('/etc/passwd').read())", "refused"),
    ("monkeypatch-builtins", "import builtins\nbuiltins.type = lambda x: bytes\nbuiltins.str = bytes\n"
                             "builtins.PermissionError = Warning\nbuiltins.next = lambda *a: 0\n"
                             "print(open('/etc/passwd').read())", "refused"),
    ("monkeypatch-sys-modules", "import sys, os\nos.path.normpath = os.path.abspath = os.path.realpath = lambda p: '/scratch/x'\n"
                                "os.fspath = lambda p: 'x'\nsys.modules['posixpath'] = sys.modules['os.path'] = None\n"
                                "print(open('/etc/passwd').read())", "refused"),
    ("str-subclass-path", "class P(str):\n    def startswith(self, *a):\n        return True\n"
                          "print(open(P('/etc/passwd')).read())", "refused"),
    ("pathlike-toctou", "class P:\n    n = 0\n    def __fspath__(self):\n        P.n += 1\n"
                        "        return '/etc/passwd' if P.n == 1 else 'ok'\nprint(open(P()).read())", "refused"),
    ("del-at-shutdown", "import os, json\nclass Evil:\n    def __del__(self):\n        os.system('touch ' + MARKER)\n"
                        "        open(MARKER, 'w').write('after the hooks were cleared')\n"
                        "import sys\nsys.modules['evil'] = Evil()\nos._exit = lambda code: None\njson.dumps = None\n"
                        "raise SystemExit(3)", "stopped"),
    # (in its PID namespace the program's parent is "0", and PARENT names no process it can see)
    # a signal handler raising in the sandbox's own code after the program, to reach interpreter
    # shutdown (which clears the audit hooks before running __del__): only the marker tells
    ("signal-handler-to-shutdown", "import _signal, sys\nclass Evil:\n    def __del__(self):\n"
                                   "        open(MARKER, 'w').write('after the hooks were cleared')\n"
                                   "sys.modules['evil'] = Evil()\ncalls = 0\ndef boom(*args):\n    global calls\n"
                                   "    calls += 1\n    if calls > 50:\n        raise KeyboardInterrupt\n"
                                   "_signal.signal(_signal.SIGALRM, boom)\n"
                                   "_signal.setitimer(_signal.ITIMER_REAL, 0.00002, 0.00002)\n"
                                   "try:\n    while calls < 50:\n        pass\nexcept BaseException:\n    pass", "any"),
    ("kill-parent", "import os\nos.kill(os.getppid(), 9)\nos.kill(PARENT, 9)\nprint('ESCAPED')", "refused"),
    ("kill-a-nobody-process", "import os\nos.kill(VICTIM, 9)\nprint('ESCAPED')", "refused"),
    ("kill-everything", "import os\nos.kill(-1, 9)\nprint('ESCAPED')", "refused"),
]
# As root with the hook alone, a hole would take this test session (or the machine) with it.
NOT_HOOK_ONLY = {"kill-parent", "kill-everything"}


def cases():
    for mode, layers in LAYERS.items():
        for name, code, expected in ATTACKS:
            if mode == "hook-only" and name in NOT_HOOK_ONLY:
                continue
            if mode == "os-only" and name == "marshal-code":
                continue  # with no hook to fool, running marshalled code is just running code
            if mode == "os-only" and name == "chroot-escape" and os.geteuid() != 0:
                continue  # not root: root of its user namespace, the sandbox keeps CAP_SYS_CHROOT there
            expected = expected if mode == "all" or expected == "any" else "stopped"
            yield pytest.param(code, layers, expected, id=f"{mode}:{name}")


@pytest.mark.parametrize(("code", "layers", "expected"), list(cases()))
def test_escape_is_stopped(code: str, layers: tuple[str, ...], expected: str, targets: Targets) -> None:
    result = run_python(targets.fill(code), _layers=layers)
    assert_contained(result, targets, stopped=expected != "any")
    if expected == "refused":
        assert result.refused, result.error
        assert "not allowed in the sandbox" in result.error


@pytest.mark.enable_socket
@pytest.mark.parametrize("layers", LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=2)\nprint('ESCAPED')",
        "import _imp, sys\nspec = type(sys.__spec__)('_socket', None, origin=SOCKET_SO)\n_socket = _imp.create_dynamic(spec)\n"
        "s = _socket.socket()\ns.connect(('127.0.0.1', PORT))\nprint('ESCAPED')",
    ],
    ids=["socket", "_imp-_socket"],
)
def test_no_network(code: str, layers: tuple[str, ...], targets: Targets) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        result = run_python(targets.fill(code).replace("PORT", str(port)), _layers=layers)
        assert_contained(result, targets)
        with pytest.raises(TimeoutError):
            server.accept()


@pytest.mark.enable_socket
def test_the_network_namespace_alone_has_no_route_to_the_host() -> None:
    """The OS layer's network namespace, checked on its own with a normal interpreter (sockets available)."""
    prefix = _namespaces_prefix()
    if not prefix:
        pytest.skip("unshare is not available here")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        code = f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=2)\n" \
               "except OSError as e:\n    print('refused:', e)"
        done = subprocess.run([*prefix, sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30)
        assert done.stdout.startswith("refused:"), done
        with pytest.raises(TimeoutError):
            server.accept()


# (id, program, what stops it: a `killed` value, "refused", "failed" or "truncated")
BOMBS = [
    ("cpu", "while True:\n    pass", "cpu"),
    ("cpu-ignoring-SIGXCPU", "import _signal\n_signal.signal(_signal.SIGXCPU, _signal.SIG_IGN)\nwhile True:\n    pass", "cpu"),
    ("memory-string", "x = ' ' * 10**10", "memory"),
    ("memory-growing-list", "chunks = []\nwhile True:\n    chunks.append(' ' * 10**6)", "memory"),
    ("fork-bomb", "import os\nwhile True:\n    os.fork()", "refused"),
    ("thread-bomb", "import _thread, time\nwhile True:\n    _thread.start_new_thread(time.sleep, (100,))", "failed"),
    ("output-flood", "while True:\n    print('x' * 1000)", "cpu"),
    ("huge-output", "print('x' * 10**8)", "truncated"),
    ("1GB-file-in-chunks", "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * 2**20)", "file"),
    ("1GB-file-sparse", "with open('big', 'wb') as f:\n    f.seek(2**30)\n    f.write(b'x')", "file"),
    ("1GB-file-at-once", "open('big', 'wb').write(b'x' * 2**30)", "memory"),
    ("many-files", "for i in range(10_000):\n    open(f'f{i}', 'wb').write(b'x' * 2**20)", "refused"),
    ("sleep", "import time\ntime.sleep(1000)", "wall"),
    ("deep-recursion", "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1)\nf(0)", "failed"),
    ("deep-C-recursion", "import sys\nsys.setrecursionlimit(10**7)\nx = []\nfor _ in range(10**6):\n    x = [x]\nprint(repr(x))", "crash"),
]


def bomb_cases():
    for name, code, expected in BOMBS:
        yield pytest.param(code, ALL, expected, id=f"all:{name}")
    for name in ("fork-bomb", "thread-bomb"):  # the OS layer's own answer to these: RLIMIT_NPROC
        code = next(code for bomb, code, _ in BOMBS if bomb == name)
        yield pytest.param(code, OS_ONLY, "failed", id=f"os-only:{name}")


@pytest.mark.parametrize(("code", "layers", "expected"), list(bomb_cases()))
def test_bomb_is_stopped(code: str, layers: tuple[str, ...], expected: str, targets: Targets) -> None:
    started = time.monotonic()
    # A wall-clock limit well past the CPU one, so that a busy machine still shows the CPU limit at work.
    result = run_python(code, limits=SandboxLimits() if expected == "wall" else SandboxLimits(wall_seconds=25), _layers=layers)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert len(result.output) <= SandboxLimits().output_bytes + 100
    if expected == "truncated":
        assert result.ok and result.output.endswith("[output truncated]")
        return
    assert not result.ok and result.error, result
    if expected == "refused":
        assert result.refused, result.error
    elif expected == "failed":
        assert not result.refused and result.killed is None, result
    else:
        assert result.killed == expected, result
        assert result.error.startswith("stopped: "), result.error
