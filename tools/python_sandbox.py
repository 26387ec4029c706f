"""``python``: the model writes a short program, a sandbox runs it, its printed output is the answer.

This is PAL (program-aided language) without PALChain's remote code execution (CVE-2023-36095).
The program runs in a separate, throw-away process behind two independent layers, so that a hole in
one is still stopped by the other:

1. **OS layer** (the kernel enforces it, whatever the program does to the interpreter):
   ``unshare -n -p -f`` puts the child in an empty network namespace and a PID namespace of its own
   (it sees and can signal no other process); it starts with an empty environment, stdin from
   /dev/null, in its own session (the whole group is killed at the wall-clock limit). Before any
   user code it sets rlimits (CPU, address space, file size, open files, core=0, processes=1: no
   fork, no thread), chroots into a fresh folder that holds nothing but the scratch folder (no
   /etc, /proc, /home, repo, interpreter or shell to read or run), and, when we are root, drops to
   ``nobody`` (no capabilities, so no way out of the chroot, and RLIMIT_NPROC is enforced — it is not
   for root). Every module the program may use is imported *before* the chroot.
2. **Interpreter layer**: an allowlisting ``sys.addaudithook`` refuses, with a clear
   ``PermissionError``, every audited operation that is not pure computation or a file operation
   inside the scratch folder: imports (only the preloaded modules are available), processes,
   sockets, ctypes, signals, ``gc``/``marshal``/code-object tricks, replacing a function's code,
   more hooks, ``input()``... The hook keeps no state the program could reach and change: it has
   no closure or globals, only immutable defaults bound when it was defined (so monkeypatching
   ``builtins``, ``os.path`` or ``sys.modules`` does not change what it checks; its write counter
   can only count up), and any exception inside it refuses the operation. The child never reaches
   interpreter shutdown, which removes audit hooks before running ``__del__`` methods: it ends in ``os._exit``.

What is weaker where: without root the child is root of a user namespace instead of nobody, so it
keeps capabilities there (a program that got past the hook could leave the chroot, as the user it
runs as); without a working ``unshare`` there are no network or PID namespaces (a warning is logged).
Disk use is bounded by ``files_written`` x ``file_bytes`` by the hook, by CPU time without it.

``run_python`` returns a :class:`SandboxResult`; :class:`PythonTool` turns it into the tool contract
of ``tools/base.py`` (``ToolRefused`` for a refused operation, ``ToolFailed`` for an exception or a
limit).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from orchard.tools.base import ToolFailed, ToolRefused, error_text, validation_text

log = logging.getLogger(__name__)

NOBODY = 65534  # uid/gid the sandbox runs as when we are root
# What the program can import: all loaded before the chroot, nothing else can be (pure computation).
AVAILABLE_MODULES = (
    "math", "cmath", "statistics", "fractions", "decimal", "numbers", "random",
    "itertools", "functools", "operator", "collections", "heapq", "bisect", "array",
    "datetime", "calendar", "time", "re", "string", "textwrap", "unicodedata", "difflib",
    "json", "csv", "base64", "struct", "hashlib", "copy", "pprint", "enum", "dataclasses", "typing",
    "io", "os", "sys",
)


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_bytes: int = 512 * 2**20  # address space (RLIMIT_AS)
    file_bytes: int = 10 * 2**20  # largest file the program may write (RLIMIT_FSIZE)
    output_bytes: int = 10_000  # printed output kept
    open_files: int = 64
    files_written: int = 64  # opens for writing (bounds disk use: files_written x file_bytes)


@dataclass(frozen=True)
class SandboxResult:
    ok: bool
    output: str
    error: str | None
    seconds: float
    killed: str | None = None  # "cpu", "memory", "wall", "file" (size), "crash" or None
    refused: bool = False  # the program attempted something the sandbox does not allow


def run_python(
    code: str, *, limits: SandboxLimits = SandboxLimits(), _layers: tuple[str, ...] = ("os", "hook")
) -> SandboxResult:
    """Run ``code`` in the sandbox and return what it printed. ``_layers`` is for the tests only."""
    started = time.monotonic()
    root = tempfile.mkdtemp(prefix="orchard-python-")  # the chroot; holds only scratch/
    try:
        return _run(code, limits, root, set(_layers), started)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(code: str, limits: SandboxLimits, root: str, layers: set[str], started: float) -> SandboxResult:
    confine = "os" in layers
    os.chmod(root, 0o755)  # root-owned: the sandbox user can enter it, not write to it
    scratch = os.path.join(root, "scratch")
    os.mkdir(scratch, 0o700)
    uid = NOBODY if confine and os.geteuid() == 0 else None
    if uid is not None:
        os.chown(scratch, uid, uid)
    job_path = os.path.join(root, "job.json")  # read (and deleted) by the child before the chroot
    with open(os.open(job_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
        json.dump({"code": code, "limits": asdict(limits), "modules": AVAILABLE_MODULES, "root": root,
                   "chroot": confine, "uid": uid, "hook": "hook" in layers}, f)
    python = [sys.executable, "-I", "-S", "-B", "-c", _child_source(), job_path]  # isolated, no site, no .pyc
    command = [*(_namespaces_prefix() if confine else ()), *python]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Both files are bounded by the child's RLIMIT_FSIZE; no pipe to drain, nothing to deadlock.
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=scratch,
            env={"LANG": "C.UTF-8", "TZ": "UTC"}, start_new_session=True,
        )
        cpu_used, timed_out = _wait(proc, limits.wall_seconds)
        seconds = time.monotonic() - started
        out.seek(0)
        raw = out.read(limits.output_bytes + 1)
        err.seek(max(0, err.seek(0, os.SEEK_END) - 65536))
        diagnostics = err.read().decode("utf-8", "replace")
    output = raw[: limits.output_bytes].decode("utf-8", "replace")
    if len(raw) > limits.output_bytes:
        output += "\n[output truncated]"
    report = _child_report(diagnostics)
    killed = "wall" if timed_out else None
    # RLIMIT_CPU's SIGKILL: unshare cannot re-raise a SIGKILL, it exits 1; and rusage counts in ticks,
    # a little short of the kernel's own count that enforces the limit.
    if not killed and report is None and proc.returncode in (1, -signal.SIGKILL):
        killed = "cpu" if cpu_used >= 0.75 * limits.cpu_seconds else None
    return _result(proc.returncode, killed, report, diagnostics, output, seconds, limits)


def _wait(proc: subprocess.Popen, wall_seconds: float) -> tuple[float, bool]:
    """Reap the child with ``wait4`` (for the CPU time it and its own child used); at the wall-clock
    limit, or if we are interrupted, kill its whole process group. Returns (CPU seconds, timed out)."""
    deadline, delay, timed_out = time.monotonic() + wall_seconds, 0.001, False
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                _kill_group(proc.pid)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return usage.ru_utime + usage.ru_stime, timed_out


def _result(rc: int, killed: str | None, report: dict[str, Any] | None, diagnostics: str, output: str,
            seconds: float, limits: SandboxLimits) -> SandboxResult:
    status = report["status"] if report else None
    if killed is None:
        if status in ("memory", "file"):
            killed = status
        elif rc < 0:
            killed = "memory" if "MemoryError" in diagnostics else "crash"
    if killed:
        stops = {
            "cpu": f"the program used more than {limits.cpu_seconds} s of CPU time",
            "wall": f"the program ran for more than {limits.wall_seconds:g} s",
            "memory": f"the program used more than {limits.memory_bytes // 2**20} MiB of memory",
            "file": f"the program wrote a file larger than {limits.file_bytes // 2**20} MiB",
            "crash": f"the program crashed ({_signal_name(-rc)}), e.g. from too deep recursion",
        }
        return SandboxResult(False, output, f"stopped: {stops[killed]}", seconds, killed=killed)
    if report is None:
        if rc == 0:  # the program called os._exit(0)
            return SandboxResult(True, output, None, seconds)
        tail = "\n".join(diagnostics.strip().splitlines()[-5:])
        return SandboxResult(False, output, f"the program exited with status {rc}\n{tail}".strip(), seconds)
    if status == "ok":
        return SandboxResult(True, output, None, seconds)
    return SandboxResult(False, output, report["error"], seconds, refused=status == "refused")


def _child_report(diagnostics: str) -> dict[str, Any] | None:
    """The child's last stderr line is its JSON report (absent if it was killed or crashed)."""
    lines = diagnostics.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return report if isinstance(report, dict) and "status" in report else None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # its own session and group (start_new_session)
    except ProcessLookupError:
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@functools.cache
def _namespaces_prefix() -> tuple[str, ...]:
    """The ``unshare`` command that works here (probed once): new network and PID namespaces.

    An empty network namespace has no interface but a down loopback: no network at all. In a new PID
    namespace the program is process 1: it sees no other process (so it can signal none) and, with
    ``--kill-child``, everything in it dies with it. As root ``unshare`` needs no user namespace (and
    must not have one: the child drops to nobody, a uid a ``-r`` namespace would not map)."""
    exe = shutil.which("unshare")
    user = () if os.geteuid() == 0 else ("-r",)
    for prefix in ((exe, *user, "-n", "-p", "-f", "--kill-child"), (exe, *user, "-n")):
        try:
            if exe and subprocess.run([*prefix, sys.executable, "-I", "-S", "-c", ""], capture_output=True,
                                      timeout=10, env={}).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    log.warning("python sandbox: `unshare` does not work here; running without network and PID namespaces")
    return ()


@functools.cache
def _child_source() -> str:
    return inspect.getsource(_child_main) + "\n_child_main()\n"


def _child_main():  # runs in the child as `python -I -S -B -c <source> JOB`: self-contained
    import builtins
    import errno
    import io
    import itertools
    import json
    import os
    import resource
    import sys

    job_path = sys.argv[1]
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    os.unlink(job_path)
    code, lim, refused_mark = job["code"], job["limits"], "sandbox: "

    # -- OS layer: limits first (processes=1 means no fork and no thread once we are not root).
    R = resource
    for which, value in ((R.RLIMIT_AS, lim["memory_bytes"]), (R.RLIMIT_FSIZE, lim["file_bytes"]),
                         (R.RLIMIT_NOFILE, lim["open_files"]), (R.RLIMIT_CORE, 0), (R.RLIMIT_NPROC, 1)):
        R.setrlimit(which, (value, value))
    R.setrlimit(R.RLIMIT_CPU, (lim["cpu_seconds"], lim["cpu_seconds"]))  # SIGKILL (a PID 1 ignores SIGXCPU)
    import ast
    import traceback

    for name in (*job["modules"], "_strptime"):  # nothing can be imported after the chroot: load it all
        __import__(name)  # now (_strptime: datetime.strptime imports it on first use)

    scratch = job["root"] + "/scratch"
    if job["chroot"]:
        try:
            os.chroot(job["root"])  # the file system is now: /scratch, and nothing else
            scratch = "/scratch"
        except PermissionError:  # not root and no user namespace: the hook still confines paths
            os.write(2, b"sandbox: chroot is not permitted here; files are confined by the hook only\n")
    os.chdir(scratch)
    if job["uid"] is not None:  # root: become nobody (no capabilities: no chroot escape, NPROC enforced)
        os.setgroups([])
        os.setgid(job["uid"])
        os.setuid(job["uid"])
        if os.getuid() != job["uid"] or os.geteuid() != job["uid"]:
            raise SystemExit("sandbox: could not drop privileges")

    # -- Output: print() goes straight to fd 1 (so it survives a kill), at most output_bytes + 1 bytes.
    class Output(io.TextIOBase):
        def __init__(self, left):
            self.left = left

        def writable(self):
            return True

        def write(self, s):
            if not isinstance(s, str):
                raise TypeError(f"write() argument must be str, not {type(s).__name__}")
            if self.left > 0:
                data = s[: self.left].encode("utf-8", "backslashreplace")[: self.left]
                self.left -= len(data)
                os.write(1, data)
            return len(s)

    out = Output(lim["output_bytes"] + 1)
    nothing_printed = out.left
    sys.stdout = sys.stderr = out
    lines = code.splitlines()

    # Bound now: the program may replace os._exit, json.dumps... but not these references.
    _exit, _write, _dumps, saved_builtins = os._exit, os.write, json.dumps, dict(builtins.__dict__)

    def report(status, error=None):  # before the program runs (after it, see the end)
        try:
            _write(2, ("\n" + _dumps({"status": status, "error": error}) + "\n").encode())
        finally:  # never a normal interpreter shutdown: it clears the audit hooks, then runs __del__s
            _exit(0)

    def user_lines(exc):  # (line number, function) of the program's own frames, innermost last
        tbs, tb = [], exc.__traceback__
        while tb is not None:  # cheap even 10**6 frames deep; only the innermost ones are looked at
            tbs.append(tb)
            tb = tb.tb_next
        return [(tb.tb_lineno, tb.tb_frame.f_code.co_name) for tb in tbs[-50:]
                if tb.tb_frame.f_code.co_filename == "<program>"]

    def describe(exc):
        frames = user_lines(exc)
        if type(exc) is PermissionError and str(exc).startswith(refused_mark):
            where = f" (line {frames[-1][0]})" if frames else ""
            return str(exc)[len(refused_mark) :] + where
        text = ["Traceback (most recent call last):"] if frames else []
        for lineno, name in frames[-5:]:
            text.append(f'  File "<program>", line {lineno}, in {name}')
            if 0 < lineno <= len(lines):
                text.append("    " + lines[lineno - 1].strip())
        text += traceback.format_exception_only(type(exc), exc)
        return "\n".join(t.rstrip("\n") for t in text)[-4000:]

    # -- PAL: a final bare expression is shown (like the interactive interpreter) if nothing was printed.
    try:
        tree = ast.parse(code, "<program>")
        last = ast.Expression(tree.body.pop().value) if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        body = compile(tree, "<program>", "exec")
        last = compile(last, "<program>", "eval") if last else None
    except (SyntaxError, ValueError) as exc:
        report("error", describe(exc))
    namespace = {"__name__": "__main__", "__builtins__": builtins}

    # -- Interpreter layer. Everything the hook uses is an immutable default bound right here: it has
    # no closure and reads no globals or builtins, so nothing the program changes can change it.
    def hook(event, args, scratch=scratch, refused=PermissionError, mark=refused_mark, type=type, str=str,
             bytes=bytes, int=int, next=next, writes=itertools.count(), max_writes=lim["files_written"],
             write_flags=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
             allowed=frozenset(("compile", "exec", "builtins.id", "sys._getframe", "object.__getattr__",
                                "function.__new__", "array.__new__", "os.putenv", "os.unsetenv")),
             paths=frozenset(("open", "os.listdir", "os.scandir", "os.walk", "os.mkdir", "os.rmdir",
                              "os.remove", "os.rename", "os.truncate", "os.utime")),
             no_dir_fd=(("os.mkdir", 2), ("os.rmdir", 1), ("os.remove", 1), ("os.rename", 2),
                        ("os.rename", 3), ("os.utime", 3)),
             processes=("os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
                        "subprocess.Popen", "pty.spawn"),
             available=", ".join(job["modules"]), exit=os._exit):
        if event == "cpython._PySys_ClearAuditHooks":
            exit(70)  # interpreter shutdown, which should not happen (see the end): stop before the hooks go
        if event in allowed:
            return
        if event == "object.__setattr__" or event == "object.__delattr__":  # class attributes, __class__...
            if args[1] not in ("__code__", "__defaults__", "__kwdefaults__"):
                return  # ...but a function's code and defaults (this hook's included) stay as they are
            raise refused(mark + "changing a function's code or defaults is not allowed in the sandbox")
        if event in paths:
            for name, index in no_dir_fd:
                if event == name and not (type(args[index]) is int and args[index] == -1):  # -1: no dir_fd
                    raise refused(mark + "paths relative to a directory descriptor are not allowed in the sandbox")
            writing = event != "open" or (type(args[2]) is int and args[2] & write_flags)
            for path in (args[0], args[1]) if event == "os.rename" else (args[0],):
                if path is None and (event == "os.listdir" or event == "os.scandir"):
                    continue  # the current folder
                if type(path) is int and event == "os.truncate":
                    continue  # a file already opened (and checked)
                if type(path) is bytes:
                    path = path.decode("utf-8", "surrogateescape")
                if type(path) is not str:
                    raise refused(mark + "file descriptors and unusual path types are not allowed in the sandbox")
                parts = []  # normalise lexically: no symlink can exist here (os.symlink is refused)
                for part in (path if path.startswith("/") else scratch + "/" + path).split("/"):
                    if part == "..":
                        if parts:
                            parts.pop()
                    elif part and part != ".":
                        parts.append(part)
                full = "/" + "/".join(parts)
                if not (full == scratch or full.startswith(scratch + "/")):
                    verb = ("writing " if writing else "reading ") if event == "open" else event + " on "
                    raise refused(mark + verb + path + " is not allowed in the sandbox: only files in the "
                                  "current folder can be used")
            if event == "open" and writing and next(writes) >= max_writes:
                raise refused(mark + "opening more than " + str(max_writes) + " files for writing is not allowed")
            return
        if event == "import":
            module = args[0] if type(args[0]) is str else "this module"
            raise refused(mark + "importing " + module + " is not allowed in the sandbox; available modules: "
                          + available)
        if event in processes:
            raise refused(mark + "starting processes (" + event + ") is not allowed in the sandbox")
        if event.startswith("socket."):
            raise refused(mark + "network access (" + event + ") is not allowed in the sandbox")
        raise refused(mark + event + " is not allowed in the sandbox")

    assert hook.__closure__ is None
    if job["hook"]:
        sys.addaudithook(hook)
    del hook

    # -- Run the program; whatever happens, report and _exit.
    status, error = "ok", None
    try:
        exec(body, namespace)
        if last is not None:
            value = eval(last, namespace)
            if value is not None and out.left == nothing_printed:
                print(repr(value))
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status, error = "error", f"SystemExit: {exc.code}"
    except MemoryError:
        namespace.clear()  # free what the program held before reporting
        status = "memory"
    except BaseException as exc:  # everything the program raised is reported
        builtins.__dict__.update(saved_builtins)  # in case the program replaced type, str...
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            status = "file"
        else:
            try:
                status = "refused" if type(exc) is PermissionError and str(exc).startswith(refused_mark) else "error"
                error = describe(exc)
            except BaseException:  # e.g. an exception whose __str__ raises
                status, error = "error", type(exc).__name__
    finally:
        # Inline, not report(): entering a function is where a signal handler the program installed
        # could raise, skip the _exit and reach interpreter shutdown. Nothing between here and the
        # inner `try` runs such a check; whatever is raised inside it, the `finally` exits.
        try:
            _write(2, ("\n" + _dumps({"status": status, "error": error}) + "\n").encode())
        finally:
            _exit(0)


# -- The tool -----------------------------------------------------------------------------------------

DESCRIPTION = (
    f"Run a short Python {sys.version_info.major}.{sys.version_info.minor} program in an isolated sandbox "
    "and return what it printed. Use it for arithmetic, counting, dates and any exact computation. "
    "Write a complete program and print() the answer (a final bare expression is shown too, like in "
    "the interactive interpreter). Only the "
    "standard library's pure-computation modules are available: " + ", ".join(AVAILABLE_MODULES) + ". "
    "No network, no subprocesses, no other packages; files only in the current folder. "
    "Limits: {cpu} s of CPU, {wall:g} s in all, {memory} MiB of memory."
)


class PythonInput(BaseModel):
    code: str = Field(
        description="A complete Python program that print()s its answer, e.g. "
        "'print(sum(n * n for n in range(1, 101)))'. Standard-library computation modules only."
    )


class PythonTool(BaseTool):
    """Program-aided answers: run model-written Python in the sandbox and return its printed output."""

    name: str = "python"
    description: str = DESCRIPTION.format(
        cpu=SandboxLimits.cpu_seconds, wall=SandboxLimits.wall_seconds, memory=SandboxLimits.memory_bytes // 2**20
    )
    args_schema: type[BaseModel] = PythonInput
    handle_tool_error: Any = error_text
    handle_validation_error: Any = validation_text

    limits: SandboxLimits = SandboxLimits()

    def _run(self, code: str, run_manager: CallbackManagerForToolRun | None = None) -> str:
        result = run_python(code, limits=self.limits)
        if result.ok:
            return result.output.rstrip("\n") or "(the program printed nothing: print() the answer)"
        if result.refused:
            raise ToolRefused(result.error)
        printed = f"\nIt printed before that:\n{result.output[-2000:]}" if result.output.strip() else ""
        raise ToolFailed(f"{result.error}{printed}")

    async def _arun(self, code: str, run_manager: Any = None) -> str:
        return await asyncio.to_thread(self._run, code)
