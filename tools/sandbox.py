"""Run one untrusted command in a bubblewrap sandbox with a time, memory and process limit.

Used by ``tools/grade.py`` to run each student's notebook. What the sandbox allows:
- the system (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, a few files of ``/etc``) read-only,
  and the read-only paths the caller names (the Python installation, the grader); nothing of
  the teacher's home or of the other submissions;
- one writable place, a private ``/tmp`` (a size-capped tmpfs, gone when the sandbox ends);
- no network (its own network namespace: only loopback), its own process, IPC, UTS and user
  namespaces, no capabilities, a new session (no terminal injection);
- a wall-clock limit, after which everything in it is killed: bwrap runs as the process
  namespace's parent (``--die-with-parent``), so killing it ends every process inside;
- a memory limit and a process limit, by a cgroup where this machine lets us make one
  (cgroup v1 or v2, usually as root), otherwise by ``ulimit`` (address space and process
  count, weaker: the report says which applied).

Results come back through a pipe (``result_fd``), not through a file the command could
rewrite; the caller validates them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

#: Files of /etc a Python program needs (name lookup, time zone, fonts, the loader's cache).
ETC_FILES = ("passwd", "group", "hosts", "nsswitch.conf", "localtime", "ld.so.cache",
             "ld.so.conf", "ld.so.conf.d", "fonts", "alternatives", "ssl", "mime.types")
#: System folders bound read-only when they exist (symbolic links such as /lib -> usr/lib
#: are bound as the folder they point to).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
GIB = 1 << 30


class SandboxError(RuntimeError):
    """No sandbox can run here; the message says what to install or pass instead."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use: wall-clock seconds, memory bytes, processes (and
    threads: a cgroup counts both).

    The defaults fit the chapters' own checks with room to spare. Each chapter's teacher
    version, graded in this sandbox on a 2-core CPU without native bf16 (December 2026),
    took at most 665 s (chapter 5 trains its CPU recipe; the others 11 s to 67 s), peaked at
    3.9 GiB of memory (chapter 1, page cache included) and 28 processes and threads."""
    seconds: float = 1800.0
    memory: int = 6 * GIB
    processes: int = 256

    def __post_init__(self):
        for name, low in (("seconds", 1), ("memory", 256 << 20), ("processes", 16)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < low:
                raise ValueError(f"limit {name} must be a number >= {low}, got {value!r}")

    def describe(self) -> str:
        return (f"{self.seconds:g} s wall clock, {self.memory / GIB:.3g} GiB memory, "
                f"{self.processes} processes")


@dataclass
class Outcome:
    """How a sandboxed run ended."""
    returncode: int | None
    seconds: float
    timed_out: bool = False
    out_of_memory: bool = False
    process_limit: bool = False
    peak_memory: int | None = None
    peak_processes: int | None = None
    result: bytes = b""
    log: str = ""


# ---------------------------------------------------------------------------------------
# Memory and process limits
# ---------------------------------------------------------------------------------------

class Cgroup:
    """A fresh cgroup (v1 memory + pids, or v2) with the limits; ``None`` from ``make`` where
    this machine does not let us create one."""

    def __init__(self, kind: str, dirs: list[Path]):
        self.kind, self.dirs = kind, dirs

    @staticmethod
    def own_path(controller: str) -> str | None:
        """This process's cgroup path for ``controller`` ('' for the v2 line)."""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                return path
        return None

    @classmethod
    def make(cls, limits: Limits) -> "Cgroup | None":
        name = f"vgg-grade-{uuid.uuid4().hex[:12]}"
        base = Path("/sys/fs/cgroup")
        if (base / "memory").is_dir() and (base / "pids").is_dir():
            group = cls("cgroup v1", [base / c / (cls.own_path(c) or "/").lstrip("/") / name
                                      for c in ("memory", "pids")])
        elif (base / "cgroup.controllers").exists():  # v2: a child of the root, as root
            group = cls("cgroup v2", [base / name])
        else:
            return None
        try:
            group._create(limits)
        except (OSError, ValueError):
            group.remove()
            return None
        return group

    def _create(self, limits: Limits) -> None:
        for d in self.dirs:
            d.mkdir()
        if self.kind == "cgroup v1":
            mem, pids = self.dirs
            (mem / "memory.limit_in_bytes").write_text(str(limits.memory))
            if (mem / "memory.memsw.limit_in_bytes").exists():  # no swapping past it
                (mem / "memory.memsw.limit_in_bytes").write_text(str(limits.memory))
            (pids / "pids.max").write_text(str(limits.processes))
            return
        d = self.dirs[0]
        parent = (d.parent / "cgroup.subtree_control").read_text().split()
        if not {"memory", "pids"} <= set(parent):
            raise ValueError("memory and pids controllers are not enabled for children")
        (d / "memory.max").write_text(str(limits.memory))
        if (d / "memory.swap.max").exists():
            (d / "memory.swap.max").write_text("0")
        (d / "pids.max").write_text(str(limits.processes))

    def enter_command(self) -> str:
        """A shell line that moves the shell into this cgroup (before it ``exec``s)."""
        return "; ".join(f"echo $$ > '{d}/cgroup.procs'" for d in self.dirs)

    def pids(self) -> list[int]:
        found = set()
        for d in self.dirs:
            try:
                found |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return sorted(found)

    def events(self) -> tuple[bool, bool]:
        """(killed for memory, refused a fork) since the cgroup was made."""
        def counter(path: Path, key: str) -> int:
            try:
                for line in path.read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
            except (OSError, ValueError):
                pass
            return 0
        if self.kind == "cgroup v1":
            mem, pids = self.dirs
            return (counter(mem / "memory.oom_control", "oom_kill") > 0,
                    counter(pids / "pids.events", "max") > 0)
        d = self.dirs[0]
        return counter(d / "memory.events", "oom_kill") > 0, counter(d / "pids.events",
                                                                     "max") > 0

    def peaks(self) -> tuple[int | None, int | None]:
        """(most memory in bytes, most processes and threads at once), where recorded."""
        def read(path: Path) -> int | None:
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return None
        if self.kind == "cgroup v1":
            mem, pids = self.dirs
            return read(mem / "memory.max_usage_in_bytes"), read(pids / "pids.peak")
        d = self.dirs[0]
        return read(d / "memory.peak"), read(d / "pids.peak")

    def kill_all(self, wait: float = 5.0) -> list[int]:
        """SIGKILL everything left in the cgroup; the pids still there after ``wait``."""
        deadline = time.monotonic() + wait
        while True:
            left = self.pids()
            if not left or time.monotonic() > deadline:
                return left
            if self.kind == "cgroup v2" and (self.dirs[0] / "cgroup.kill").exists():
                (self.dirs[0] / "cgroup.kill").write_text("1")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def remove(self) -> None:
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass


def limit_method(limits: Limits) -> str:
    """How memory and processes are limited on this machine (for the report)."""
    group = Cgroup.make(limits)
    if group is None:
        return "ulimit (address space and process count; no writable cgroup here)"
    group.remove()
    return group.kind


# ---------------------------------------------------------------------------------------
# bubblewrap
# ---------------------------------------------------------------------------------------

def bwrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox here, or ``None`` when it can."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    proc = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--unshare-user",
                           "--die-with-parent", "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"bubblewrap cannot make a sandbox here: {proc.stderr.strip()[:300]}"
    return None


def bwrap_command(argv: list[str], ro_paths: dict[str, str], env: dict[str, str],
                  limits: Limits) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` sandboxed.

    ``ro_paths`` maps host paths to paths inside (bound read-only); ``env`` is the whole
    environment inside. ``/tmp`` (and ``/dev/shm``) are the only writable places, each a
    tmpfs of at most the memory limit.
    """
    size = str(limits.memory)
    # The tmpfs folders first: a bind below /tmp (a checkout in /tmp) must land on top.
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
           "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
           "--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev",
           "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm"]
    for d in SYSTEM_DIRS:
        if os.path.isdir(d):
            cmd += ["--ro-bind", os.path.realpath(d), d] if os.path.islink(d) else \
                   ["--ro-bind", d, d]
    for name in ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for host, inside in ro_paths.items():
        cmd += ["--ro-bind", host, inside]
    cmd += ["--chdir", "/tmp"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd + ["--"] + argv


def run_sandboxed(argv: list[str], *, ro_paths: dict[str, str], env: dict[str, str],
                  limits: Limits, result_fd_env: str = "RESULT_FD",
                  sandbox: bool = True) -> Outcome:
    """Run ``argv`` in a sandbox (or, with ``sandbox=False``, directly, with the limits) and
    collect what it writes to the pipe whose number is in ``$RESULT_FD``."""
    read_end, write_end = os.pipe()
    env = dict(env, **{result_fd_env: str(write_end)})
    group = Cgroup.make(limits)
    if sandbox:
        inner = bwrap_command(argv, ro_paths, env, limits)
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        inner, run_env = argv, dict(os.environ, **env)
    if group is not None:
        prefix = group.enter_command()
    else:
        prefix = f"ulimit -v {limits.memory // 1024} -u {limits.processes}"
    shell = f"{prefix} && exec \"$@\""
    log = tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.Popen(["/bin/sh", "-c", shell, "sh", *inner], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_end,),
                            env=run_env, start_new_session=True)
    os.close(write_end)
    chunks, timed_out = [], False
    os.set_blocking(read_end, False)
    try:
        while True:
            try:
                chunk = os.read(read_end, 1 << 16)
                if chunk:
                    chunks.append(chunk)
            except BlockingIOError:
                pass
            if proc.poll() is not None:
                break
            if time.monotonic() - start > limits.seconds:
                timed_out = True
                break
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap's death ends its namespace
        except ProcessLookupError:
            pass
        proc.wait()
        if group is not None:
            group.kill_all()
        try:
            while chunk := os.read(read_end, 1 << 16):
                chunks.append(chunk)
        except (BlockingIOError, OSError):
            pass
        os.close(read_end)
    seconds = time.monotonic() - start
    oom, forks = group.events() if group is not None else (False, False)
    peak_memory, peak_processes = group.peaks() if group is not None else (None, None)
    if group is not None:
        group.remove()
    log.seek(0)
    text = log.read()[-20000:].decode("utf-8", "replace")
    log.close()
    return Outcome(returncode=None if timed_out else proc.returncode, seconds=seconds,
                   timed_out=timed_out, out_of_memory=oom, process_limit=forks,
                   peak_memory=peak_memory, peak_processes=peak_processes,
                   result=b"".join(chunks), log=text)
