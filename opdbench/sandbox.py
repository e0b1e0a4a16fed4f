"""Run untrusted, model-written Python against hidden tests.

The code tasks (tiny tier: write a small function from a spec; real tier: MBPP,
HumanEval) score a candidate program by executing it together with hidden test
assertions.  Candidates come from small, partly-trained policies and are treated
as hostile::

    from opdbench.sandbox import run_many, run_tests
    r = run_tests("def add(a, b):\n    return a + b\n",
                  ["assert add(1, 2) == 3", "assert add(0, 0) == 1"])
    r.score, r.status, r.outcomes      # 0.5, 'ok', ('pass', 'AssertionError')
    results = run_many([(program, tests), ...], workers=2)   # same order, same Result

``run_tests`` and ``run_many`` never raise: a non-str program (or a job that is
not a ``(program, tests)`` pair) gives ``status="invalid_input"``, an internal
failure ``status="sandbox_error"``, both with score 0; a non-str test counts as
a failing test (outcome ``InvalidTest``).  ``score_program`` and ``score_many``
are the same calls returning only the scores.  ``run_tests`` is a batch of one.

How a batch runs
----------------
Starting an interpreter, preloading modules and building namespaces costs
~80 ms, so that happens once per *worker*: ``run_many`` shares the jobs among
``workers`` threads, each driving one *supervisor*, ``python -I -S -B -u -c
<harness>`` started in a new session with a five-variable environment, stdin
and stdout on ``/dev/null`` and a Unix socket as its control channel.  The
supervisor (trusted; it never runs candidate code) preloads common modules,
snapshots the existing types for ``check_types``, enters its network and mount
namespaces (below), then serves one request at a time:

1. The parent picks a fresh uid and a nonce, writes the job (program, tests,
   nonce, uid) to an anonymous memfd and sends "run" with that descriptor.
2. The supervisor forks a child with three new pipes (stdout, stderr, report
   channel) and passes their read ends back.  It never reads the job (the child
   does) nor any output (the parent does), so what a child inherits of the
   supervisor's memory holds nothing of any other candidate.
3. The child - the *harness*, trusted code until the candidate starts - takes
   its own session (process group), reads the job, closes every descriptor it
   does not need, compiles the tests, enters its own IPC and mount namespaces
   with a fresh tmpfs working directory, sets its rlimits, drops to the uid,
   installs the audit hook, writes a setup line ``S <protections>`` to the
   report pipe, then runs the program once and every test in its own
   ``try/except BaseException`` (so one failing or raising test hides
   nothing), writes ``R <nonce> <status> <n> <outcome,...>`` and calls
   ``os._exit``.
4. The parent reads the three pipes until the child exits or its wall clock
   (``timeout_s``, counted from step 1) runs out, SIGKILLs the child's process
   group, then every process of the uid, and only then asks the supervisor to
   reap the child (exit status, CPU time).  So every process a candidate
   started is dead before its result exists and before the next candidate of
   that worker is forked; a timeout costs its own candidate its limit and
   nothing more.

The parent takes a score only from one well-formed ``R`` line with the nonce;
anything else on the report pipe (extra or partial lines, a second report) is
``status="tampered"``, score 0.  stdout/stderr are never parsed, so printing
"all tests passed" or a fake ``R`` line does nothing, and leaving early
(``sys.exit`` while loading is an ``error``; ``os._exit`` gives ``no_report``)
scores 0.  A supervisor that fails (dies, or stops answering for 30 s) is
replaced: the candidate it was running gets ``sandbox_error``; a job it could
not start (no candidate code ran) is retried once on the new supervisor.

Cost here (2 shared cores, Linux 6.18): ~10 ms of CPU per trivial candidate
(fork, namespaces, guards, the uid sweep), against ~90 ms for a fresh
interpreter per candidate; a single ``run_tests`` pays the supervisor's
start-up too (~0.1 s).

Statuses: ``ok`` (all tests ran; score is the honest fraction), ``memory`` (as
ok, but a MemoryError was seen), ``error`` (the program raised while loading;
stderr gets a one-line reason), ``syntax_error``, ``timeout`` (wall clock or
RLIMIT_CPU), ``output_limit`` (stdout or stderr passed ``max_output_bytes``; the
child is killed at once rather than drained), ``killed`` (died from a signal,
e.g. a C-stack overflow), ``no_report``, ``tampered``, ``invalid_input``,
``sandbox_error``.  Only ``ok`` and ``memory`` can carry a nonzero score.

OS-enforced protections (kernel), when the parent runs as root
--------------------------------------------------------------
All verified in the development container (root, Linux 6.18, full
capabilities) by ``tests/test_sandbox.py``; the OS-layer
tests switch the Python guards off (``audit_hook=False``) so that the kernel
alone is tested.  ``Result.protections`` lists what a run actually got.

* ``uid:N`` - every candidate runs as its own fresh random uid/gid (no passwd
  entry, no supplementary groups; the kernel drops all capabilities on setuid).
  It cannot signal the parent, the supervisor, another candidate or anyone else
  (EPERM), cannot write anything it does not own, cannot setuid back, and
  ``RLIMIT_NPROC`` (ignored by the kernel for root) bounds fork bombs.
  Afterwards every process with that uid is found in ``/proc`` and SIGKILLed
  through a pidfd: this reaches grandchildren that left the process group with
  ``setsid`` (daemons).
* ``process_group`` - own session; the parent SIGKILLs the group and the child
  before the supervisor reaps it, so the group id cannot be reused in between.
* ``rlimits`` - RLIMIT_CPU (soft ``ceil(cpu_s)``, hard +1 s), RLIMIT_AS and
  RLIMIT_DATA (``memory_mb``), RLIMIT_FSIZE (``disk_mb``), RLIMIT_NOFILE 64,
  RLIMIT_NPROC 32 (threads count), RLIMIT_CORE 0; hard = soft, so they cannot
  be raised.  The parent enforces the wall clock (``timeout_s``) and reads at
  most ``max_output_bytes`` per stream through non-blocking pipes.
* ``no_new_privs``; ``pdeathsig`` (the child is SIGKILLed if the supervisor
  exits; the supervisor, if the parent thread that started it exits).
* ``netns`` - the supervisor's network namespace, with only a downed loopback:
  nothing outside, including servers of the parent on 127.0.0.1, is reachable.
  A worker's candidates share it one after another, never at once, and no
  socket outlives the processes that hold it, which are all killed in between.
* ``mountns`` - the supervisor's private mount namespace (nothing propagates
  back) in which: ``hide`` - ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run``,
  ``/root``, ``/home``, the checkout containing this package and ``hide_paths``
  are covered by empty tmpfs (the standard library is bind-mounted back at its
  own path if it lived there); ``ro_root`` - the whole tree is made read-only
  recursively (``mount_setattr``); ``hide_proc``/``hide_sys`` - ``/proc`` and
  ``/sys`` are empty, so the candidate cannot read its own memory
  (``/proc/self/mem``), see other processes or the parent's environment.
  Nothing writable is executable, so native code the candidate writes cannot be
  loaded.  Other directories (e.g. ``/work/shared`` here) stay readable.
* ``tmpfs_workdir`` - each child then enters a mount namespace of its own, a
  copy of the supervisor's, where the working directory is a fresh
  size/inode-limited ``noexec`` tmpfs owned by its uid: empty at the start, and
  gone with the candidate's last process.
* ``ipcns`` - each child's own IPC namespace: no System V shared memory,
  semaphore or message queue is shared with, or left behind for, another
  candidate (such objects outlive their creator).
* The interpreter runs with ``-I -S -B``: no PYTHON* variables, no user site,
  no site-packages, no current directory on ``sys.path``; the environment is
  exactly PATH, LANG, LC_ALL, HOME and TMPDIR (the last two = the workdir).

Best-effort protections (Python level, in the candidate's own process)
----------------------------------------------------------------------
These share an interpreter with the candidate.  Anyone who reaches native code
or corrupts the interpreter (CPython has known crashers) can defeat all of
them: they are defence in depth, and nothing in the OS layer relies on them.

* ``audit_hook`` - ``sys.addaudithook``, installed before any candidate code
  (hooks cannot be removed; a candidate's own ``addaudithook`` is silently
  refused).  Refused events: ``socket.*``, ``subprocess.Popen``, ``os.system``,
  ``os.exec``, ``os.posix_spawn``, ``os.fork``, ``os.forkpty``, ``os.kill``,
  ``os.killpg``, ``signal.pthread_kill``, ``ctypes.*``,
  ``resource.setrlimit``/``prlimit``, ``sys.addaudithook``,
  ``sys.settrace``/``setprofile``, ``gc.get_objects``/``get_referrers``/
  ``get_referents``, ``code.__new__``, ``marshal.*``, ``setopencodehook``,
  ``syslog.*``, ``sqlite3.*``, ``webbrowser.open``, ``pdb.Pdb``,
  ``builtins.breakpoint``.  Refused imports: ctypes, _posixsubprocess,
  subprocess, multiprocessing, sqlite3, dbm, pty, resource, faulthandler,
  readline, _test*/_xx*, and native modules from outside the standard library.
  ``open`` (and mkdir/rename/remove/symlink/link/chmod/chown/utime/truncate/
  xattr) for writing outside the workdir, with a ``dir_fd``, or via a relative
  ``os.open``; any ``open`` of ``/proc``, ``/sys`` or a ``.pyc`` (later imports
  compile from source, so ``marshal`` - a route to crafted bytecode - is never
  needed).  Paths are resolved by the hook's own ``realpath`` built from
  captured ``os.lstat``/``os.readlink``, so patching ``os.path`` does not help;
  a thread racing a symlink swap against the check can still win (the OS layer
  covers writes).  ``sys._getframe``, ``sys._current_frames`` and the audited
  frame attributes (``tb_frame``, ``gi_frame``, ``cr_frame``, ``ag_frame``)
  raise, so the candidate cannot walk up into the harness's frame (the nonce
  and the counters live in its locals).  Functions without audit events are
  deleted: ``os.memfd_create``, ``mkfifo``, ``mknod``, ``pidfd_open``,
  ``setpriority``, ``signal.signal`` (a handler receives the interrupted
  frame) and ``signal.pidfd_send_signal``; ``_imp.create_builtin`` (which
  would build fresh copies of ``posix``/``_signal``) goes through the hook.
* Scoring integrity: what the harness needs after the candidate starts is held
  in local variables captured beforehand; tests run with a pristine copy of the
  builtins, and ``sys.modules`` plus the dicts of common modules (math, re,
  collections, ...) are restored before each test.
* ``check_types`` (on by default): tests see the program's functions through a
  wrapper that rejects (``UntrustedTypeError``) any value whose type the
  program defined - an object whose ``__eq__`` always answers True, an
  ``int``/``str``/``list`` subclass - and standard classes the program
  monkeypatched (``Counter.__eq__ = ...``), in return values, in arguments
  mutated in place and in returned iterators.  Honest programs returning their
  own class instances fail it (pass ``check_types=False``).  NOT covered:
  methods of the program's own classes, a wrapper handed to candidate code
  (its closure can be rewritten), and anything else that lies inside the
  process - the sandbox is not a semantic verifier.

Where a protection is unavailable
---------------------------------
Every step is attempted separately and skipped if it fails; the run goes on and
``Result.protections`` says what was applied.

* Parent not root: no uid drop (the candidate runs as the parent's user and, if
  it gets past the audit hook, could signal the parent, the supervisors or a
  concurrent candidate, or touch their files), no namespaces, no RLIMIT_NPROC
  (the kernel would count all the user's processes), no uid sweep (only the
  process group is killed, so a native-code attacker could leave a ``setsid``
  daemon), and the workdir is a plain directory (RLIMIT_FSIZE-limited) that the
  parent empties before each candidate and removes afterwards.  rlimits, the
  process group, the wall clock, the output cap, the minimal environment and
  the Python-level guards still apply.
* ``unshare``/``mount`` refused (e.g. Docker's default seccomp profile): no
  network/mount isolation; the audit hook is then the only network barrier and
  the only thing keeping writes out of world-writable directories; the uid
  still protects everything the parent owns.
* A child's tmpfs cannot be mounted: its workdir is the supervisor's view of
  the per-worker directory, which the parent empties before such a candidate
  (read-only where the whole tree is).
* ``mount_setattr`` missing (Linux < 5.12): only the hiding tmpfs mounts are
  read-only.  Standard library not world-readable at its own path: imports go
  through ``/proc/self/fd/N`` and ``/proc`` stays visible (the hook still
  refuses to open it).
* No ``os.pidfd_open`` (Linux < 5.3): exit is polled, and the uid sweep uses
  ``os.kill`` (a tiny pid-reuse window).

Killed grandchildren are orphans that PID 1 reaps (here within ~2 s); until
then they are zombie entries (dead: no memory, no CPU).

What candidates share: a child is a fork of its supervisor, so it starts with
the same preloaded modules, the same ``str`` hash seed and the same type
snapshot (``random`` is reseeded in each child).  A worker's candidates share
its (downed) network namespace and its read-only mount tree, one after another.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Result", "run_many", "run_tests", "score_many", "score_program"]

_REPORT_CAP = 1 << 20           # bytes accepted on the report channel
_DEFAULT_HIDE = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home")
_START_TIMEOUT_S = 60.0         # supervisor start-up (interpreter, preloads, namespaces) on a loaded machine
_REPLY_TIMEOUT_S = 30.0         # a fork or the reaping of a killed child; longer means the supervisor is broken
_MAX_WORKERS = 16


@dataclass(frozen=True)
class Result:
    passed: int
    total: int
    status: str
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    outcomes: tuple[str, ...] = ()        # per test: "pass" or the exception's class name
    returncode: int | None = None
    protections: tuple[str, ...] = ()     # what the harness managed to apply
    pid: int | None = None                # the child's pid (= its process group id)
    uid: int | None = None                # the sandbox uid, when privileges were dropped

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0


@dataclass(frozen=True)
class _Limits:
    """What every candidate of a batch gets, already validated."""
    timeout_s: float
    cpu_s: int                  # whole seconds: RLIMIT_CPU's unit
    memory_mb: int
    max_output: int
    disk_mb: int
    hide_paths: tuple[str, ...]
    audit: bool
    check_types: bool


def score_program(program: Any, tests: Any, **limits: Any) -> float:
    """Fraction of ``tests`` that pass; never raises."""
    return run_tests(program, tests, **limits).score


def score_many(jobs: Any, **limits: Any) -> list[float]:
    """``run_many``'s scores: one float per ``(program, tests)`` job, in order; never raises."""
    return [r.score for r in run_many(jobs, **limits)]


def run_tests(program: Any, tests: Any, *, timeout_s: float = 2.0, cpu_s: float = 2.0,
              memory_mb: int = 256, max_output_bytes: int = 16_384, disk_mb: int = 16,
              hide_paths: Sequence[str] = (), check_types: bool = True, audit_hook: bool = True) -> Result:
    """Run ``program`` then each test string (e.g. ``"assert f(1) == 2"``) in a sandbox.

    ``timeout_s`` is the candidate's wall clock (the supervisor's start-up is not counted),
    ``cpu_s`` CPU seconds (rounded up), ``memory_mb`` the address-space limit,
    ``disk_mb`` the largest file / the tmpfs workdir, ``hide_paths`` extra
    directories to hide.  ``audit_hook=False`` switches off the Python-level
    guards; it exists to test the OS layer alone and should not be used for
    scoring.  A batch of one: see ``run_many`` to score many programs at a lower cost each.
    """
    return run_many([(program, tests)], workers=1, timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb,
                    max_output_bytes=max_output_bytes, disk_mb=disk_mb, hide_paths=hide_paths,
                    check_types=check_types, audit_hook=audit_hook)[0]


def run_many(jobs: Any, *, workers: int | None = None, timeout_s: float = 2.0, cpu_s: float = 2.0,
             memory_mb: int = 256, max_output_bytes: int = 16_384, disk_mb: int = 16,
             hide_paths: Sequence[str] = (), check_types: bool = True, audit_hook: bool = True) -> list[Result]:
    """``run_tests`` for each ``(program, tests)`` job; the results come back in the jobs' order.

    Each candidate is run exactly as ``run_tests`` runs it, with the same limits and statuses,
    but ``workers`` supervisor processes (default: one per available CPU) each set the sandbox
    up once and fork a fresh child per candidate.  Never raises: a job that is not a pair, or
    whose program is not a str, gives ``invalid_input``.
    """
    try:
        jobs = list(jobs)
    except Exception:
        return []
    prepared = [_prepare(job) for job in jobs]
    results: list[Result | None] = [early for _, _, early in prepared]
    try:
        limits = _Limits(timeout_s=_num(timeout_s, 2.0), cpu_s=max(1, math.ceil(_num(cpu_s, 2.0))),
                         memory_mb=int(_num(memory_mb, 256)), max_output=int(_num(max_output_bytes, 16_384)),
                         disk_mb=int(_num(disk_mb, 16)), hide_paths=_paths(hide_paths),
                         audit=bool(audit_hook), check_types=bool(check_types))
        pending = [(i, program, tests) for i, (program, tests, early) in enumerate(prepared) if early is None]
        _run_pending(pending, limits, _worker_count(workers, len(pending)), results)
    except Exception as exc:  # never let a scorer call take the trainer down
        for i, (_, tests, _) in enumerate(prepared):
            if results[i] is None:
                results[i] = _failure(tests, exc, time.monotonic())
    return results


# --------------------------------------------------------------------------- inputs

def _prepare(job: Any) -> tuple[str | None, list[str | None], Result | None]:
    """-> (program, tests, None), or a final Result for a job that cannot run."""
    try:
        program, tests = job
    except Exception:
        return None, [], Result(0, 0, "invalid_input", stderr="a job must be a (program, tests) pair")
    try:
        program, tests = _normalize(program, tests)
    except Exception as exc:          # e.g. tests given as an iterator that raises
        return None, [], _failure([], exc, time.monotonic())
    if program is None:
        return None, tests, Result(0, len(tests), "invalid_input", stderr="program must be a str")
    return program, tests, None


def _normalize(program: Any, tests: Any) -> tuple[str | None, list[str | None]]:
    if isinstance(tests, str):
        tests = [tests]
    try:
        items = list(tests) if tests is not None else []
    except TypeError:
        items = []
    test_list = [t if isinstance(t, str) else None for t in items]   # None = invalid test: fails
    return (program if isinstance(program, str) else None), test_list


def _num(value: Any, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) and v > 0 else default


def _paths(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(p for p in value if isinstance(p, str))
    except TypeError:
        return ()


def _worker_count(workers: Any, jobs: int) -> int:
    try:
        wanted = int(workers) if workers is not None else len(os.sched_getaffinity(0))
    except (TypeError, ValueError, OverflowError, AttributeError):
        wanted = 1
    return max(1, min(wanted, jobs, _MAX_WORKERS))


def _failure(tests: Sequence[Any], exc: BaseException, start: float) -> Result:
    return Result(0, len(tests), "sandbox_error", stderr=f"{type(exc).__name__}: {exc}",
                  seconds=time.monotonic() - start)


# --------------------------------------------------------------------------- identity

def _id_ranges(path: str) -> list[tuple[int, int]]:
    try:
        rows = [line.split() for line in Path(path).read_text().splitlines()]
        return [(int(r[0]), int(r[0]) + int(r[2])) for r in rows if len(r) == 3]
    except (OSError, ValueError):
        return [(0, 65536)]


def _pick_uid() -> int | None:
    """A random uid (also usable as gid) mapped in this user namespace and in no passwd entry."""
    if os.geteuid() != 0 or not hasattr(os, "setresuid"):
        return None
    ranges = [(max(a1, a2), min(b1, b2)) for a1, b1 in _id_ranges("/proc/self/uid_map")
              for a2, b2 in _id_ranges("/proc/self/gid_map")]
    for lo, hi in ((1_000_000, 2**31 - 2), (20_000, 60_000)):
        spans = [(max(a, lo), min(b, hi)) for a, b in ranges if min(b, hi) - max(a, lo) > 1000]
        if spans:
            a, b = spans[secrets.randbelow(len(spans))]   # not `random`: trainers seed it
            uid = a + secrets.randbelow(b - a)
            try:
                import pwd
                pwd.getpwuid(uid)
                continue                      # unlucky: a real account
            except (KeyError, ImportError):
                return uid
    return None


def _live_pids_of_uid(uid: int) -> list[int]:
    """Pids of the live (not zombie) processes whose real uid is ``uid``.  Runs once per candidate:
    raw os.open/os.read, about twice as fast as file objects."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/status", os.O_RDONLY)
            try:
                text = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError:
            continue
        uid_at, state_at = text.find(b"\nUid:"), text.find(b"\nState:")
        if uid_at < 0 or state_at < 0:
            continue
        real_uid = text[uid_at + 5:uid_at + 40].split()[0]
        state = text[state_at + 7:state_at + 12].split()[0]
        if int(real_uid) == uid and state not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def _kill_uid(uid: int) -> bool:
    """SIGKILL every live process whose real uid is ``uid``; True when none is left."""
    for _ in range(100):
        pids = _live_pids_of_uid(uid)
        if not pids:
            return True
        for pid in pids:
            try:
                if hasattr(os, "pidfd_open"):
                    fd = os.pidfd_open(pid)
                    try:  # re-check identity after pinning the process
                        if _uid_of(pid) == uid:
                            signal.pidfd_send_signal(fd, signal.SIGKILL)
                    finally:
                        os.close(fd)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass
        time.sleep(0.002)
    return not _live_pids_of_uid(uid)


def _uid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh.read(4096).split(b"\n"):
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _hide_list(extra: Sequence[str]) -> list[str]:
    repo = Path(__file__).resolve().parent.parent      # the checkout / site-packages holding opdbench
    cands = list(_DEFAULT_HIDE) + [str(repo)] + [p for p in (extra or ()) if isinstance(p, str)]
    out = []
    for p in cands:
        real = os.path.realpath(p)
        if real == "/" or not os.path.isdir(real):
            continue
        out.append(real)
    return sorted(set(out), key=len)



# --------------------------------------------------------------------------- the batch

def _run_pending(pending: list, limits: _Limits, workers: int, results: list) -> None:
    """Share ``pending`` (index, program, tests) jobs among ``workers`` threads, one supervisor each."""
    jobs = iter(pending)
    lock = threading.Lock()
    stop = threading.Event()          # e.g. KeyboardInterrupt in the caller: hand out no more jobs

    def take():
        with lock:
            return None if stop.is_set() else next(jobs, None)

    if workers == 1:
        _drain(take, limits, results)
        return
    # Each thread starts and closes its own supervisor: its PR_SET_PDEATHSIG follows that thread.
    with ThreadPoolExecutor(workers, thread_name_prefix="opdbench-sandbox") as pool:
        futures = [pool.submit(_drain, take, limits, results) for _ in range(workers)]
        try:
            for future in futures:
                future.result()
        except BaseException:
            stop.set()
            raise


def _drain(take, limits: _Limits, results: list) -> None:
    """One worker: run jobs from ``take`` one at a time.  A supervisor that breaks is replaced, and
    a job it could not even start is retried once on the new one: whatever broke it (e.g. the
    candidate before) costs that job nothing."""
    supervisor, cannot_start = None, None
    try:
        while (job := take()) is not None:
            i, program, tests = job
            start = time.monotonic()
            for attempt in range(2):
                if supervisor is None and cannot_start is None:
                    try:
                        supervisor = _Supervisor(limits)
                    except Exception as exc:
                        cannot_start = exc        # do not pay a failing start-up once per job
                if supervisor is None:
                    results[i] = _failure(tests, cannot_start, start)
                    break
                try:
                    results[i] = supervisor.run(program, tests)
                    break
                except Exception as exc:
                    supervisor.close()
                    supervisor = None
                    results[i] = _failure(tests, exc, start)
                    if not isinstance(exc, _NotStarted):
                        break                     # the candidate ran: no second chance
    finally:
        if supervisor is not None:
            supervisor.close()


class _NotStarted(RuntimeError):
    """The supervisor could not start the candidate (no candidate code ran): safe to retry."""


class _Supervisor:
    """The parent's side of one supervisor process: it forks a child per candidate on request;
    the parent hands the child its job, reads its output, enforces the limits and kills it."""

    def __init__(self, limits: _Limits):
        self.limits = limits
        self.privileged = _pick_uid() is not None      # root with spare uids: uid drop and namespaces
        self.base = tempfile.mkdtemp(prefix="opdbench-sbx-")
        self.work = os.path.join(self.base, "work")
        self.log = os.path.join(self.base, "supervisor.log")
        self.work_dirty = True     # whether the next candidate needs a freshly emptied self.work
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        lim = self.limits
        os.chmod(self.base, 0o711)
        os.mkdir(self.work, 0o700)
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            config = {
                "control_fd": theirs.fileno(), "work": self.work, "privileged": self.privileged,
                "audit_hook": lim.audit, "check_types": lim.check_types,
                "hide": _hide_list(lim.hide_paths) if self.privileged else [],
                "limits": {"cpu": lim.cpu_s, "as": lim.memory_mb << 20, "fsize": lim.disk_mb << 20,
                           "disk_mb": lim.disk_mb, "nofile": 64, "nproc": 32},
            }
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "HOME": self.work, "TMPDIR": self.work}
            exe = sys.executable or shutil.which("python3") or "python3"
            log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                self.proc = subprocess.Popen(
                    [exe, "-I", "-S", "-B", "-u", "-c", _HARNESS, json.dumps(config)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_fd,
                    pass_fds=(theirs.fileno(),), env=env, cwd=self.base, start_new_session=True)
            finally:
                os.close(log_fd)
        self.sock.settimeout(_START_TIMEOUT_S)
        reply = self._receive()
        if reply != b"ready":
            raise RuntimeError(f"sandbox supervisor did not start ({reply!r}): {self._log_tail()}")
        self.sock.settimeout(_REPLY_TIMEOUT_S)

    def run(self, program: str, tests: list[str | None]) -> Result:
        """One candidate, start to finish: when this returns, every process it started is dead."""
        lim = self.limits
        start = time.monotonic()
        uid = _pick_uid() if self.privileged else None
        nonce = secrets.token_hex(16)
        try:
            if self.privileged and uid is None:
                raise RuntimeError("no free uid for the sandbox")
            if self.work_dirty:     # the last candidate had no private tmpfs: it may have left files
                _fresh_dir(self.work, uid)
            job = json.dumps({"nonce": nonce, "program": program, "tests": tests, "uid": uid}).encode()
            pid, fds = self._fork(job)
        except Exception as exc:
            if uid is not None:
                _kill_uid(uid)      # in case a child was forked but never handed over
            raise _NotStarted(f"{type(exc).__name__}: {exc}") from exc
        try:
            out, err, rep, timed_out, overflow = _collect(pid, fds, start + lim.timeout_s, lim.max_output)
        finally:
            _kill_group(pid)
            for fd in fds:
                os.close(fd)
            if uid is not None:
                _kill_uid(uid)        # grandchildren that left the group (setsid daemons)
            wait_status, cpu_used = self._reap(pid)
        result = _verdict(out, err, rep, nonce, len(tests), timed_out=timed_out, overflow=overflow,
                          wait_status=wait_status, cpu_used=cpu_used, cpu_limit=lim.cpu_s,
                          seconds=time.monotonic() - start, pid=pid, uid=uid)
        self.work_dirty = "tmpfs_workdir" not in result.protections
        return result

    def _fork(self, job: bytes) -> tuple[int, list[int]]:
        """Ask for a child that reads ``job``; -> (its pid, [stdout, stderr, report] read ends)."""
        job_fd = os.memfd_create("opdbench-job")       # the supervisor passes it on unread
        try:
            view = memoryview(job)
            while view:
                view = view[os.write(job_fd, view):]
            os.lseek(job_fd, 0, os.SEEK_SET)
            socket.send_fds(self.sock, [b"run"], [job_fd])
        finally:
            os.close(job_fd)
        msg, fds, _, _ = socket.recv_fds(self.sock, 64, 3)
        if len(fds) != 3 or not msg.isdigit():
            for fd in fds:
                os.close(fd)
            raise RuntimeError(f"sandbox supervisor failed to fork ({msg!r}): {self._log_tail()}")
        return int(msg), fds

    def _reap(self, pid: int) -> tuple[int | None, float]:
        """The supervisor reaps its (killed) child: -> (wait status, CPU seconds used)."""
        self.sock.send(b"reap %d" % pid)
        reply = self._receive().split()
        if len(reply) != 2:
            return None, 0.0            # already gone: e.g. the supervisor was killed
        return int(reply[0]), float(reply[1])

    def _receive(self) -> bytes:
        reply = self.sock.recv(64)
        if not reply:
            raise RuntimeError(f"sandbox supervisor exited: {self._log_tail()}")
        return reply

    def _log_tail(self) -> str:
        try:
            with open(self.log, "rb") as fh:
                return fh.read()[-2000:].decode("utf-8", "replace").strip() or "(no output)"
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()         # the supervisor sees EOF and exits; its children die with it
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _remove_tree(self.base)


def _fresh_dir(path: str, uid: int | None) -> None:
    """An empty working directory for the next candidate; it is what the candidate sees when
    no private tmpfs could be mounted over it (e.g. when the parent is not root)."""
    _remove_tree(path)
    os.mkdir(path, 0o700)
    if uid is not None:
        os.chown(path, uid, uid)


def _kill_group(pid: int) -> None:
    """SIGKILL the child and its process group.  The child is not reaped yet, so neither its pid
    nor its group id can have been reused."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _collect(pid: int, fds: list[int], deadline: float, max_output: int):
    """Read stdout/stderr/report until the child exits (plus a short drain) or the deadline."""
    out_fd, err_fd, rep_fd = fds
    streams = {out_fd: bytearray(), err_fd: bytearray(), rep_fd: bytearray()}
    caps = {out_fd: max_output, err_fd: max_output, rep_fd: _REPORT_CAP}
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
            sel.register(pidfd, selectors.EVENT_READ)
        except OSError:
            pidfd = None
    exited_at = None
    timed_out = overflow = False
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                timed_out = exited_at is None
                break
            open_pipes = [fd for fd in streams if _registered(sel, fd)]
            if exited_at is not None and (not open_pipes or now - exited_at > 0.2):
                break
            wait = deadline - now
            if pidfd is None or exited_at is not None:
                wait = min(wait, 0.02)
            for key, _ in sel.select(wait):
                fd = key.fd
                if fd == pidfd:
                    sel.unregister(pidfd)
                    exited_at = time.monotonic()
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                streams[fd] += chunk
                if len(streams[fd]) > caps[fd]:
                    overflow = True
            if overflow:
                break
            if exited_at is None and pidfd is None and _has_exited(pid):
                exited_at = time.monotonic()
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    return bytes(streams[out_fd]), bytes(streams[err_fd]), bytes(streams[rep_fd]), timed_out, overflow


def _registered(sel: selectors.BaseSelector, fd: int) -> bool:
    try:
        sel.get_key(fd)
        return True
    except KeyError:
        return False


def _has_exited(pid: int) -> bool:
    """Without pidfds: the child (the supervisor's, not ours) is a zombie or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _remove_tree(path: str) -> None:
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except (OSError, RecursionError):
        if os.path.exists(path):
            subprocess.run(["rm", "-rf", "--one-file-system", path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=False)


def _verdict(out: bytes, err: bytes, rep: bytes, nonce: str, total: int, *, timed_out: bool, overflow: bool,
             wait_status: int | None, cpu_used: float, cpu_limit: int, seconds: float, pid: int,
             uid: int | None) -> Result:
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    rc = os.waitstatus_to_exitcode(wait_status) if wait_status is not None else None
    protections, report, junk = _parse_report(rep, nonce, total)
    common = dict(stdout=stdout, stderr=stderr, seconds=seconds, returncode=rc,
                  protections=protections, pid=pid, uid=uid)
    if overflow:
        return Result(0, total, "output_limit", **common)
    if timed_out:
        return Result(0, total, "timeout", **common)
    if junk:
        return Result(0, total, "tampered", **common)
    if report is not None:
        status, outcomes = report
        passed = sum(o == "pass" for o in outcomes) if status in ("ok", "memory") else 0
        return Result(passed, total, status, outcomes=outcomes, **common)
    if rc is not None and rc < 0:
        if -rc == signal.SIGXCPU or (-rc == signal.SIGKILL and cpu_used >= cpu_limit - 0.05):
            return Result(0, total, "timeout", **common)
        return Result(0, total, "memory" if "MemoryError" in stderr else "killed", **common)
    if not protections:
        return Result(0, total, "sandbox_error", **common)   # the harness never reached the candidate
    return Result(0, total, "no_report", **common)


def _parse_report(rep: bytes, nonce: str, total: int):
    """-> (protections, (status, outcomes) or None, junk?) from the report channel's bytes."""
    lines = rep.split(b"\n")
    tail = lines.pop()                       # b"" when the data ends with a newline
    protections: tuple[str, ...] = ()
    if lines and lines[0].startswith(b"S "):  # written by the harness before any candidate code ran
        protections = tuple(p for p in lines.pop(0)[2:].decode("ascii", "replace").split(",") if p)
    junk = bool(tail) or len(lines) > 1
    report = None
    if len(lines) == 1:
        parts = lines[0].decode("ascii", "replace").split(" ")
        if (len(parts) == 5 and parts[0] == "R" and parts[1] == nonce
                and parts[2] in ("ok", "memory", "error", "syntax_error") and parts[3] == str(total)):
            outcomes = tuple(parts[4].split(",")) if total else ()
            if len(outcomes) == total:
                report = (parts[2], outcomes)
        if report is None:
            junk = True
    return protections, report, junk


# --------------------------------------------------------------------------- the harness
# Runs as ``python -I -S -B -u -c _HARNESS <config json>``: the supervisor (trusted, never runs
# candidate code) sets up once and forks a child per candidate.  In the child, everything
# before "candidate code starts" is trusted; after that, only local variables captured earlier
# are used, because the candidate can rebind builtins, module attributes and sys.modules.

_HARNESS = r'''
def _main():
    g = globals()
    serve, run_candidate = g.pop("_serve"), g.pop("_run_candidate")
    helpers = {name: g.pop(name) for name in ("_mounter", "_setup_namespaces", "_private_namespaces",
                                              "_make_hook", "_make_guard")}
    g.pop("_main", None)
    del g
    child = serve(helpers)          # returns only in a freshly forked child, once per candidate
    del serve                       # (the supervisor's frame and its locals are gone by now)
    run_candidate(*child)


def _serve(helpers):
    """The supervisor: preload, set up the namespaces, then serve "run" (fork a child for the job
    whose descriptor comes with the request) and "reap <pid>" until the parent hangs up."""
    import os, sys, json, signal, socket
    cfg = json.loads(sys.argv[1])
    sock = socket.socket(fileno=cfg["control_fd"])
    prot = []

    # 1. Preload what programs and tests commonly import (fast later; and later imports are
    #    compiled from source because .pyc/marshal are refused by the audit hook).
    for name in ("math", "cmath", "re", "string", "collections", "collections.abc", "itertools",
                 "functools", "operator", "heapq", "bisect", "random", "copy", "fractions",
                 "decimal", "statistics", "datetime", "typing", "dataclasses", "enum", "array",
                 "struct", "hashlib", "textwrap", "unicodedata", "numbers", "types", "contextlib"):
        try:
            __import__(name)
        except Exception:
            pass

    # 2. Directory fds for sys.path, so imports keep working once we can no longer read the
    #    original paths (unprivileged uid, hidden /root): /proc/self/fd/N/<module>.py.
    alias = {}
    for p in sys.path:
        try:
            alias[p] = "/proc/self/fd/%d" % os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            pass
    lib_dirs = tuple(os.path.realpath(p) for p in alias)

    # 3. Namespaces shared by this supervisor's children (each child adds its own, see
    #    _private_namespaces).
    ctypes = libc = mount = None
    direct = False
    if cfg["privileged"]:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)        # PR_SET_PDEATHSIG: die with the parent's thread
        mount = helpers["_mounter"](ctypes, libc)
        os.umask(0o022)
        direct = helpers["_setup_namespaces"](libc, mount, cfg, alias, prot)
    os.umask(0o077)

    def remap(path):
        for orig, new in alias.items():
            if path == orig or path.startswith(orig + "/"):
                return new + path[len(orig):]
        return path
    if not direct:   # the uid may not be able to read the stdlib's own path: go through the fds
        sys.path[:] = [alias[p] for p in sys.path if p in alias]
        for mod in list(sys.modules.values()):
            pth = getattr(mod, "__path__", None)
            if isinstance(pth, list):
                pth[:] = [remap(x) for x in pth]
    sys.path[:] = [p for p in sys.path if p in alias or p.startswith("/proc/self/fd/")]
    sys.path_importer_cache.clear()
    if direct:
        for fd_path in alias.values():
            os.close(int(fd_path.rsplit("/", 1)[1]))
    keep_fds = frozenset() if direct else frozenset(int(p.rsplit("/", 1)[1]) for p in alias.values())
    guard = None
    if cfg["check_types"]:    # every type that exists before any candidate runs; built once (~15 ms)
        known, stack = {}, [object]
        while stack:
            t = stack.pop()
            if id(t) not in known:
                known[id(t)] = t
                stack.extend(type.__subclasses__(t))
        guard = helpers["_make_guard"](known)
        del known, stack, t

    # 4. Serve.  The supervisor never holds a job's content (the child reads it from the
    #    descriptor) nor a child's output (the parent reads the pipes), so a child's copy of the
    #    supervisor's memory holds nothing of any other candidate.
    import gc
    gc.freeze()      # children then never touch (copy) the supervisor's objects when they collect
    sock.send(b"ready")
    me = os.getpid()
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 64, 1)
        except OSError:
            break
        if msg == b"run" and len(fds) == 1:
            pipes = [os.pipe() for _ in range(3)]          # stdout, stderr, report
            pid = os.fork()
            if pid == 0:
                sock.close()
                for r, _ in pipes:
                    os.close(r)
                return (cfg, helpers, prot, alias, lib_dirs, direct, keep_fds, guard, ctypes, libc, mount, me,
                        fds[0], pipes[0][1], pipes[1][1], pipes[2][1])
            os.close(fds[0])
            for _, w in pipes:
                os.close(w)
            socket.send_fds(sock, [b"%d" % pid], [r for r, _ in pipes])
            for r, _ in pipes:
                os.close(r)
        elif msg[:5] == b"reap " and not fds:
            try:
                _, status, ru = os.wait4(int(msg[5:]), 0)
                sock.send(("%d %r" % (status, ru.ru_utime + ru.ru_stime)).encode())
            except ChildProcessError:
                sock.send(b"-")
        else:                                              # EOF: the parent is done
            for fd in fds:
                os.close(fd)
            break
    os._exit(0)


def _run_candidate(cfg, helpers, prot, alias, lib_dirs, direct, keep_fds, guard, ctypes, libc, mount,
                   supervisor, job_fd, out_fd, err_fd, rfd):
    """A forked child of the supervisor: read the job, isolate, drop privileges, run, report."""
    import os, sys, json, builtins, resource, signal
    prot = list(prot)
    os.setsid()                                           # own session and process group
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    chunks = []
    while True:
        chunk = os.read(job_fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    job = json.loads(b"".join(chunks))
    del chunks
    nonce, program, tests, uid = job.pop("nonce"), job.pop("program"), job.pop("tests"), job.pop("uid")
    del job
    keep = sorted({0, 1, 2, rfd} | keep_fds)             # close everything else the supervisor had
    for lo, hi in zip(keep, keep[1:] + [max(keep[-1] + 1, os.sysconf("SC_OPEN_MAX"))]):
        os.closerange(lo + 1, hi)
    work, lim = cfg["work"], cfg["limits"]
    test_codes = []
    for i, src in enumerate(tests):   # tests are trusted: compile them before the candidate runs
        if not isinstance(src, str):
            test_codes.append("InvalidTest")
            continue
        try:
            test_codes.append(compile(src, "<test %d>" % i, "exec", dont_inherit=True))
        except Exception as e:
            test_codes.append(type(e).__name__)
        except BaseException:
            test_codes.append("SyntaxError")
    if libc is not None:
        helpers["_private_namespaces"](libc, mount, work, uid, lim["disk_mb"], prot)
    os.chdir(work)

    # Resource limits (hard == soft, so they cannot be raised again).
    try:
        for res, soft, hard in ((resource.RLIMIT_CPU, lim["cpu"], lim["cpu"] + 1),
                                (resource.RLIMIT_AS, lim["as"], lim["as"]),
                                (resource.RLIMIT_DATA, lim["as"], lim["as"]),
                                (resource.RLIMIT_FSIZE, lim["fsize"], lim["fsize"]),
                                (resource.RLIMIT_NOFILE, lim["nofile"], lim["nofile"]),
                                (resource.RLIMIT_CORE, 0, 0)):
            resource.setrlimit(res, (soft, hard))
        if uid is not None:   # ignored for root, and per-user: only meaningful after the uid drop
            resource.setrlimit(resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"]))
        prot.append("rlimits")
    except (OSError, ValueError):
        pass

    # Drop privileges to the fresh uid; die with the supervisor.
    if libc is not None and uid is not None:
        if libc.prctl(38, 1, 0, 0, 0) == 0:          # PR_SET_NO_NEW_PRIVS
            prot.append("no_new_privs")
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            prot.append("uid:%d" % uid)
        except OSError:
            pass
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:   # PR_SET_PDEATHSIG (reset by setuid)
            prot.append("pdeathsig")
        if os.getppid() != supervisor:
            os._exit(3)
    prot.append("process_group")
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    audit_on = cfg["audit_hook"]
    del libc, ctypes, mount, cfg, alias, keep_fds
    if "random" in sys.modules:          # forked children would otherwise share one random state
        sys.modules["random"].seed()
    make_hook = helpers["_make_hook"]
    del helpers

    # Python-level guards.
    if audit_on:
        import _imp
        # No audit events exist for these; signal handlers would receive the harness's frame.
        for mod, names in ((os, ("memfd_create", "mkfifo", "mknod", "pidfd_open", "setpriority")),
                           (sys.modules.get("posix"), ("memfd_create", "mkfifo", "mknod", "pidfd_open",
                                                        "setpriority")),
                           (signal, ("signal", "pidfd_send_signal")),
                           (sys.modules.get("_signal"), ("signal", "pidfd_send_signal"))):
            for name in names:
                if mod is not None and hasattr(mod, name):
                    delattr(mod, name)
        # _imp.create_builtin has no audit event and would hand out fresh copies of posix/_signal
        # with the functions deleted above; route it through the hook, which keeps the original.
        # With the whole tree read-only and /proc gone, the kernel already confines what a dir_fd
        # could reach, so the hook can allow dir_fd / relative os.open (shutil.rmtree needs them).
        fenced = {"ro_root", "tmpfs_workdir", "hide_proc"} <= set(prot)
        hook, create_builtin = make_hook(os.path.realpath(os.getcwd()), lib_dirs, os, _imp.create_builtin,
                                         frozenset(sys.modules), sys.audit, fenced)
        sys.addaudithook(hook)
        _imp.create_builtin = create_builtin
        del hook, create_builtin
        prot.append("audit_hook")

    # Snapshots for scoring integrity, and captured callables.
    _exec, _dict, _type, _str, _str_add, _write, _exit = exec, dict, type, str, str.__add__, os.write, os._exit
    _BaseException, _MemoryError = BaseException, MemoryError
    _type_name = type.__dict__["__name__"].__get__
    ok_chars = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
    pristine = dict(builtins.__dict__)
    sys_modules = sys.modules
    module_snap = dict(sys_modules)
    dict_snaps = [(sys_modules[m].__dict__, dict(sys_modules[m].__dict__))
                  for m in ("math", "cmath", "operator", "re", "collections", "itertools", "functools",
                            "heapq", "bisect", "string", "fractions", "decimal", "statistics", "copy",
                            "random", "numbers", "typing", "json") if m in sys_modules]
    missing = object()
    _str_type = str
    _callable, _issubclass, _type_type = callable, issubclass, type
    n = len(test_codes)
    n_text = str(n)

    def name_of(exc):
        try:
            raw = _str_add("", _type_name(_type(exc)))
            return "".join([c for c in raw if c in ok_chars])[:64] or "Exception"
        except _BaseException:
            return "Exception"

    os.write(rfd, ("S " + ",".join(prot) + "\n").encode())
    del json, tests

    # ---------------------------------------------------------------- candidate code starts
    status, outcomes, seen_memory = "ok", [], False
    g = {"__name__": "candidate", "__builtins__": builtins}
    try:
        code = compile(program, "<candidate>", "exec", dont_inherit=True)
    except _BaseException as exc:
        e = exc
        status, fail = ("memory" if _type(e) is _MemoryError else "syntax_error"), name_of(e)
    else:
        del program
        try:
            _exec(code, g)
        except _BaseException as exc:
            e = exc
            status, fail = ("memory" if _type(e) is _MemoryError else "error"), name_of(e)
    if status == "ok":
        tg = _dict(g)
        tg["__builtins__"] = _dict(pristine)
        if guard is not None:   # tests see the program's functions through a type check
            for k, v in _dict(g).items():
                if _callable(v) and not _issubclass(_type(v), _type_type):
                    tg[k] = guard(v)
        for tcode in test_codes:
            for k, v in module_snap.items():
                if sys_modules.get(k, missing) is not v:
                    sys_modules[k] = v
            for d, snap in dict_snaps:
                for k, v in snap.items():
                    if d.get(k, missing) is not v:
                        d[k] = v
            if _type(tcode) is _str_type:          # the test itself did not compile
                outcomes.append(tcode)
                continue
            try:
                _exec(tcode, tg)
                outcomes.append("pass")
            except _BaseException as e:
                if _type(e) is _MemoryError:
                    seen_memory = True
                outcomes.append(name_of(e))
        if seen_memory:
            status = "memory"
    else:
        outcomes = [fail] * n
        try:   # a one-line reason, e.g. "PermissionError: sandbox: blocked os.fork"
            _write(2, _str_add(_str_add(_str_add("candidate failed to load: ", fail), ": "),
                               _str_add("", _str(e))[:500]).encode("utf-8", "replace") + b"\n")
        except _BaseException:
            pass
    line = "R " + nonce + " " + status + " " + n_text + " " + (",".join(outcomes) or "-") + "\n"
    data = line.encode("ascii", "replace")
    while data:
        data = data[_write(rfd, data):]
    _exit(0)


def _mounter(ctypes, libc):
    """mount(2) through libc: -> mount(src, target, fstype, flags, data), raising OSError."""
    import os

    def mount(src, target, fstype, flags, data):
        enc = lambda s: None if s is None else s.encode()
        if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), target)
    return mount


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)


def _setup_namespaces(libc, mount, cfg, alias, prot):
    """The supervisor's network + mount namespaces: hide directories (re-exposing the standard
    library where it was under one), read-only root, and no /proc or /sys when nothing needs
    them.  Returns True when the standard library is readable at its own paths for a sandbox uid."""
    import ctypes, os
    work = cfg["work"]
    if libc.unshare(0x40000000) == 0:                 # CLONE_NEWNET
        prot.append("netns")
    if libc.unshare(0x00020000) != 0:                 # CLONE_NEWNS
        return False
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE, None)   # never propagate to the host
    except OSError:
        return False
    prot.append("mountns")
    # Bind sources must live in this namespace: descriptors opened before unshare() do not.
    src = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in alias}
    hidden = []
    for d in cfg["hide"]:
        if any(d == h or d.startswith(h + "/") for h in hidden):
            continue
        try:
            mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,nr_inodes=256,mode=755")
        except OSError:
            continue
        hidden.append(d)
        if work.startswith(d + "/"):
            os.makedirs(work, exist_ok=True)          # where each child mounts its own tmpfs
    if hidden:
        prot.append("hide")
    for path in alias:                                 # e.g. a pyenv under the hidden /root
        if any(path.startswith(h + "/") for h in hidden):
            try:
                os.makedirs(path, exist_ok=True)
                mount("/proc/self/fd/%d" % src[path], path, None, MS_BIND, None)
            except OSError:
                pass
    attr = (ctypes.c_uint64 * 4)(0x1 | 0x2, 0, 0, 0)   # MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
    if libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), ctypes.c_char_p(b"/"),   # mount_setattr
                    ctypes.c_uint(0x8000), ctypes.byref(attr), ctypes.c_size_t(32)) == 0:  # AT_RECURSIVE
        prot.append("ro_root")
    else:
        for d in hidden:
            try:
                mount(None, d, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
            except OSError:
                pass

    def world_readable(path):
        parts = path.rstrip("/").split("/")
        try:
            for i in range(1, len(parts) + 1):
                mode = os.stat("/".join(parts[:i]) or "/").st_mode
                if not mode & (0o005 if i == len(parts) else 0o001):
                    return False
        except OSError:
            return False
        return True
    for fd in src.values():
        os.close(fd)
    direct = all(world_readable(p) for p in alias)
    if direct:   # imports need no /proc/self/fd aliases: hide /proc (own memory, other pids) and /sys
        for d in ("/proc", "/sys"):
            try:
                mount("tmpfs", d, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555")
                prot.append("hide" + d.replace("/", "_"))
            except OSError:
                pass
    return direct


def _private_namespaces(libc, mount, work, uid, disk_mb, prot):
    """A child's own namespaces, on top of the supervisor's: IPC (no System V object or message
    queue shared with, or left behind for, another candidate) and mount, in which the working
    directory is a fresh size/inode-limited noexec tmpfs owned by the candidate's uid; both
    disappear with the candidate's last process."""
    if libc.unshare(0x08000000) == 0:                 # CLONE_NEWIPC
        prot.append("ipcns")
    # Only on top of the supervisor's private mount namespace: a copy of the host's would
    # propagate this mount back to the host.
    if "mountns" not in prot or libc.unshare(0x00020000) != 0:     # CLONE_NEWNS
        return
    try:
        mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=%dm,nr_inodes=4096,mode=700,uid=%d,gid=%d" % (disk_mb, uid, uid))
        prot.append("tmpfs_workdir")
    except OSError:
        pass   # the workdir stays what the supervisor sees: read-only, or emptied by the parent


def _make_guard(known):
    """Wrap program functions so that tests only ever see values of pre-existing types.

    Catches the "always equal" family of hacks (an object, or an int/str/list subclass, whose
    __eq__/__bool__ lies) in return values, in arguments mutated in place and in returned
    iterators.  Kept out of _main's scope: a wrapper can reach its own closure cells.
    """
    import collections
    _type, _id, _issubclass, _hasattr, _str_add, _range = type, id, issubclass, hasattr, str.__add__, range
    _type_name = type.__dict__["__name__"].__get__
    FunctionType = type(lambda: None)
    known_ids, keep_alive = frozenset(known), tuple(known.values())
    _mro, _tdict = type.__dict__["__mro__"].__get__, type.__dict__["__dict__"].__get__
    _len, _set, _dict_items, missing = len, set, dict.items, object()
    # Python-level standard classes (Counter, Fraction, ...) can be monkeypatched: remember them.
    heap = {_id(t): (_mro(t), dict(_tdict(t))) for t in keep_alive if t.__flags__ & (1 << 9)}
    leaf = frozenset(_id(t) for t in (int, float, complex, bool, str, bytes, type(None), range))
    views = frozenset(_id(_type(v)) for v in ({}.keys(), {}.values(), {}.items()))
    containers = ((dict, lambda x: [kv for pair in _dict_items(x) for kv in pair]), (list, list.__iter__),
                  (tuple, tuple.__iter__), (set, set.__iter__), (frozenset, frozenset.__iter__),
                  (collections.deque, collections.deque.__iter__))

    class UntrustedTypeError(TypeError):
        pass

    def unmodified(t):
        snap = heap.get(_id(t))
        if snap is None:
            return True                      # a static (C) type: immutable
        mro = _mro(t)
        if _len(mro) != _len(snap[0]):
            return False
        for i in _range(_len(mro)):
            base = mro[i]
            if base is not snap[0][i]:
                return False
            bsnap = heap.get(_id(base))
            if bsnap is not None:
                cur = _tdict(base)
                if _len(cur) != _len(bsnap[1]):
                    return False
                for k, v in bsnap[1].items():
                    if cur.get(k, missing) is not v:
                        return False
        return True

    def check(value, skip_foreign_args):
        stack, seen, seen_types = [(value, 0)], _set(), _set()
        while stack:
            x, depth = stack.pop()
            t = _type(x)
            tid = _id(t)
            if tid in leaf:
                continue
            if tid not in known_ids:
                if skip_foreign_args and depth == 1:
                    continue
                raise UntrustedTypeError(_str_add("value of a type defined by the program: ",
                                                  _str_add("", _type_name(t))))
            if tid not in seen_types:
                if not unmodified(t):
                    raise UntrustedTypeError(_str_add("value of a standard type the program modified: ",
                                                      _str_add("", _type_name(t))))
                seen_types.add(tid)
            if _id(x) in seen:
                continue
            seen.add(_id(x))
            items = ()
            if tid in views:
                items = x
            else:
                for base, iterate in containers:
                    if _issubclass(t, base):
                        items = iterate(x)
                        break
            for item in items:
                stack.append((item, depth + 1))

    def checked(iterator):
        for item in iterator:
            check(item, False)
            yield item

    def wrap(fn):
        def guarded(*args, **kwargs):
            result = fn(*args, **kwargs)
            check(args, True)
            check(kwargs, True)
            rt = _type(result)
            if rt is FunctionType:
                return wrap(result)
            if _id(rt) in known_ids and _id(rt) not in leaf and _hasattr(rt, "__next__"):
                return checked(result)
            check(result, False)
            return result
        return guarded
    wrap.keep_alive = keep_alive
    return wrap


def _make_hook(work, lib_dirs, os, create_builtin, loaded, audit, fenced):
    """-> (audit hook, replacement for _imp.create_builtin).  Everything they use is bound
    here, before the candidate runs, and none of it is shared with _main's variables."""
    class Spec:
        __slots__ = ("name",)

        def __init__(self, name):
            self.name = name
    _ImportError = ImportError
    _str, _bytes, _int, _isinstance, _len = str, bytes, int, isinstance, len
    _str_add, _decode = str.__add__, bytes.decode
    _lstat, _readlink, _getcwd = os.lstat, os.readlink, os.getcwd
    _PermissionError, _ValueError, _AttributeError, _BaseException = (
        PermissionError, ValueError, AttributeError, BaseException)
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    deny = frozenset((
        "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
        "subprocess.Popen", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
        "sys.addaudithook", "sys.settrace", "sys.setprofile", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "code.__new__", "marshal.load", "marshal.loads", "marshal.dumps",
        "setopencodehook", "cpython.PyInterpreterState_New", "webbrowser.open", "pdb.Pdb",
        "builtins.breakpoint"))
    deny_prefix = ("socket.", "ctypes.", "syslog.", "sqlite3.", "_posixsubprocess", "winreg.")
    frame_events = frozenset(("sys._getframe", "sys._current_frames", "sys._current_exceptions"))
    frame_attrs = frozenset(("tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"))
    # (socket may be imported - email.utils does - but no socket can be created.)
    bad_modules = ("ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing",
                   "_multiprocessing", "sqlite3", "_sqlite3", "dbm", "_dbm", "_gdbm", "pty", "_posixshmem",
                   "_test", "_xx", "xx", "faulthandler", "_lsprof", "resource", "readline", "_ctypes_test")
    # event -> (positions of path arguments, positions of dir_fd arguments)
    path_events = {"os.mkdir": ((0,), (2,)), "os.rename": ((0, 1), (2, 3)), "os.remove": ((0,), (1,)),
                   "os.rmdir": ((0,), (1,)), "os.symlink": ((1,), (2,)), "os.link": ((0, 1), (2, 3)),
                   "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)),
                   "os.truncate": ((0,), ()), "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ())}
    S_IFMT, S_IFLNK = 0o170000, 0o120000
    work_prefix = _str_add(work, "/")

    def refuse(event):
        raise _PermissionError(_str_add("sandbox: blocked ", event))

    def as_text(p):
        if _isinstance(p, _str):
            return _str_add("", p)
        if _isinstance(p, _bytes):
            return _decode(p, "utf-8", "surrogateescape")
        return None

    def resolve(p):                      # os.path.realpath from captured primitives
        if p[:1] != "/":
            p = _str_add(_str_add(_getcwd(), "/"), p)
        rest = p.split("/")[::-1]
        done, hops = "", 0
        while rest:
            c = rest.pop()
            if c == "" or c == ".":
                continue
            if c == "..":
                done = done[:done.rfind("/")] if done else ""
                continue
            cand = _str_add(_str_add(done, "/"), c)
            try:
                st = _lstat(cand)
            except _BaseException:
                done = cand
                continue
            if st.st_mode & S_IFMT == S_IFLNK:
                hops += 1
                if hops > 40:
                    raise _PermissionError("sandbox: too many symlinks")
                target = _readlink(cand)
                if target[:1] == "/":
                    done = ""
                rest.extend(target.split("/")[::-1])
                continue
            done = cand
        return done or "/"

    def inside_work(p):
        r = resolve(p)
        return r == work or r.startswith(work_prefix)

    def check_path(event, p):
        t = as_text(p)
        if t is None or "\x00" in t or not inside_work(t):
            refuse(event)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            if _isinstance(path, _int):
                return                      # an already-open descriptor
            t = as_text(path)
            if t is None or "\x00" in t:
                refuse(event)
            writing = _isinstance(flags, _int) and (flags & WRITE_FLAGS)
            if _isinstance(mode, _str) and ("w" in mode or "a" in mode or "x" in mode or "+" in mode):
                writing = True
            r = resolve(t)
            if mode is None and t[:1] != "/" and not fenced:   # os.open: its dir_fd is invisible here
                refuse("os.open with a relative path")
            if writing:
                if not (r == work or r.startswith(work_prefix) or r == "/dev/null"):
                    refuse(_str_add("open for writing outside the workdir: ", t))
            if r == "/proc" or r.startswith("/proc/") or r == "/sys" or r.startswith("/sys/"):
                refuse(_str_add("open ", t))
            if r.endswith(".pyc"):
                refuse("open .pyc")
            return
        if event in deny or event.startswith(deny_prefix):
            refuse(event)
        if event in frame_events:
            raise _ValueError("sandbox: frame introspection is disabled")
        if event == "object.__getattr__":
            if args[1] in frame_attrs:
                raise _AttributeError("sandbox: frame introspection is disabled")
            return
        if event == "import":
            name = as_text(args[0]) or ""
            for bad in bad_modules:
                if name == bad or name.startswith(_str_add(bad, ".")) or (
                        bad in ("_test", "_xx", "xx") and name.startswith(bad)):
                    refuse(_str_add("import ", name))
            if args[1] is not None:         # a native extension module is about to be loaded
                f = as_text(args[1])
                r = resolve(f) if f else ""
                for d in lib_dirs:
                    if r.startswith(_str_add(d, "/")):
                        break
                else:
                    refuse(_str_add("native module outside the standard library: ", name))
            return
        if event == "opdbench.create_builtin":      # see create_builtin in _main
            name = as_text(args[0])
            if name is None or name in loaded or name == "faulthandler":
                raise _ImportError(_str_add("sandbox: cannot (re)create builtin module ", name or "?"))
            args[1].append(create_builtin(Spec(name)))
            return
        spec = path_events.get(event)
        if spec is not None:
            for i in spec[1]:
                if i < _len(args) and args[i] is not None and args[i] != -1:
                    if not fenced:
                        refuse(_str_add(event, " with dir_fd"))
                    return
            for i in spec[0]:
                check_path(event, args[i])

    def guarded_create_builtin(spec):
        box = []
        audit("opdbench.create_builtin", spec.name, box)
        return box[0]
    return hook, guarded_create_builtin


_main()
'''
