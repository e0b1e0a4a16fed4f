"""The code-task sandbox: hostile candidates must score 0 and leave the test process unharmed."""
import os
import secrets
import socket
import time

import pytest

from opdbench.sandbox import Result, run_many, run_tests, score_many, score_program

ADD = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
IS_ROOT = os.geteuid() == 0


# --------------------------------------------------------------------------- helpers

def _live(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _live_in_group(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(name))
    return out


def _live_with_uid(uid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as fh:
                    text = fh.read()
            except OSError:
                continue
            state = text.split("State:")[1].split()[0]
            real_uid = int(text.split("\nUid:")[1].split()[0])
            if real_uid == uid and state not in ("Z", "X"):
                out.append(int(name))
    return out


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "sentinel.txt"
    path.write_text("precious")
    return path


def check_unharmed(r: Result, sentinel, elapsed: float, timeout_s: float) -> None:
    assert os.getpid() > 0 and sentinel.read_text() == "precious"
    assert elapsed < timeout_s + 2.0, (elapsed, r)
    assert r.pid is not None and _live_in_group(r.pid) == [], r
    if r.uid is not None:
        assert _live_with_uid(r.uid) == [], r


def run(program, tests=TESTS, **kw):
    kw.setdefault("timeout_s", 2.0)
    t0 = time.monotonic()
    r = run_tests(program, tests, **kw)
    return r, time.monotonic() - t0


# --------------------------------------------------------------------------- honest cases

def test_correct_program_scores_one():
    r, _ = run(ADD)
    assert (r.score, r.status, r.outcomes) == (1.0, "ok", ("pass", "pass"))


def test_half_correct_scores_half():
    r, _ = run("def add(a, b):\n    return 3\n")
    assert (r.score, r.status, r.outcomes) == (0.5, "ok", ("pass", "AssertionError"))


def test_raising_tests_count_as_failures_without_hiding_the_others():
    prog = "def add(a, b):\n    if a < 0:\n        raise ValueError('no')\n    return a + b\n"
    r, _ = run(prog, TESTS + ["assert add(2, 2) == 4", "undefined_name", "assert add(", "1/0"])
    assert r.outcomes == ("pass", "ValueError", "pass", "NameError", "SyntaxError", "ZeroDivisionError")
    assert r.passed == 2 and r.total == 6 and r.status == "ok"


def test_stdlib_imports_files_and_shared_test_namespace_work():
    prog = ("import heapq, re, collections, math, csv, tempfile, shutil, os, logging, enum\n"
            "with tempfile.TemporaryDirectory() as d:\n"
            "    os.makedirs(os.path.join(d, 'a', 'b'))\n"
            "os.makedirs('x/y')\nshutil.rmtree('x')\n"
            "Point = collections.namedtuple('Point', 'x y')\nColor = enum.Enum('Color', 'RED GREEN')\n"
            "logging.getLogger().warning('logging works')\n"
            "def add(a, b):\n"
            "    with open('scratch.txt', 'w') as fh:\n"
            "        fh.write(str(a + b))\n"
            "    with tempfile.TemporaryFile() as t:\n"
            "        t.write(b'x')\n"
            "    print('debug', a, b)\n"
            "    return int(open('scratch.txt').read())\n")
    tests = ["def check(candidate):\n    assert candidate(2, 3) == 5\n", "check(add)",
             "import math\nassert math.isclose(add(1, 1), 2)"]
    r, _ = run(prog, tests)
    assert (r.score, r.status) == (1.0, "ok"), r
    assert "debug 2 3" in r.stdout and "logging works" in r.stderr


@pytest.mark.parametrize("program,tests", [
    (None, TESTS), (123, TESTS), (b"def add(a, b): return a + b", TESTS), ("", TESTS),
    ("   \n", TESTS), (ADD, None), (ADD, []), (ADD, 42), (ADD, [None, 7, "assert add(1, 1) == 2"]),
    ("def add(a, b): return a + b\x00", TESTS), ("\udcff = 1", TESTS), (object(), object()),
])
def test_malformed_input_never_raises(program, tests):
    r = run_tests(program, tests, timeout_s=2.0)
    assert isinstance(r, Result) and 0.0 <= r.score <= 1.0
    if tests == [None, 7, "assert add(1, 1) == 2"]:
        assert r.outcomes == ("InvalidTest", "InvalidTest", "pass") and r.score == pytest.approx(1 / 3)
    elif not isinstance(program, str) or program.strip() == "" or not tests:
        assert r.score == 0.0
    assert score_program(program, tests, timeout_s="bogus") == r.score


def test_tests_given_as_single_string_and_bad_limits():
    assert score_program(ADD, "assert add(1, 2) == 3", timeout_s=-1, memory_mb=None) == 1.0


# --------------------------------------------------------------------------- hostile candidates

HOSTILE = {
    # name: (program, expected statuses, timeout_s)
    "kill_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + ADD, {"error"}, 2.0),
    "killpg_parent": ("import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n" + ADD,
                      {"error"}, 2.0),
    "kill_parent_inside_test": ("import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), 9)\n"
                                "    return a + b\n", {"ok"}, 2.0),
    "fork_bomb": ("import os\nwhile True:\n    os.fork()\n", {"error"}, 2.0),
    "subprocess_daemon": ("import subprocess\nsubprocess.Popen(['sleep', '100'], start_new_session=True)\n"
                          + ADD, {"error"}, 2.0),
    "alloc_unbounded": ("chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 24))\n", {"memory"}, 4.0),
    "alloc_huge_in_test": ("def add(a, b):\n    return len(bytearray(1 << 40))\n", {"memory"}, 2.0),
    "print_gigabytes": ("while True:\n    print('x' * 65536)\n", {"output_limit"}, 2.0),
    "stderr_flood": ("import sys\nwhile True:\n    sys.stderr.write('y' * 65536)\n", {"output_limit"}, 2.0),
    "sys_exit_early": ("import sys\nsys.exit(0)\n" + ADD, {"error"}, 2.0),
    "os_exit_early": ("import os\nos._exit(0)\n", {"no_report"}, 2.0),
    "exit_inside_test": ("import sys\ndef add(a, b):\n    sys.exit(0)\n", {"ok"}, 2.0),
    "unbounded_recursion": ("def add(a, b):\n    return add(a, b)\n", {"ok"}, 2.0),
    "c_stack_overflow": ("import sys\nsys.setrecursionlimit(10**7)\nx = y = []\nfor _ in range(200000):\n"
                         "    x, y = [x], [y]\nx == y\n", {"killed"}, 3.0),
    "missing_module": ("import numpy_does_not_exist\n" + ADD, {"error"}, 2.0),
    "syntax_error": ("def add(a, b)\n    return a + b\n", {"syntax_error"}, 2.0),
    "sleep_forever": ("import time\ntime.sleep(10**6)\n", {"timeout"}, 1.0),
    "cpu_spin": ("while True:\n    pass\n", {"timeout"}, 5.0),
    "fake_success_markers": ("print('ALL TESTS PASSED')\nprint('R ' + '0' * 32 + ' ok 2 pass,pass')\n"
                             "print('{\"passed\": 2, \"total\": 2}')\n", {"ok"}, 2.0),
    "forge_report_channel": ("import os\nfor fd in range(3, 1024):\n    try:\n"
                             "        os.write(fd, b'R ' + b'0' * 32 + b' ok 2 pass,pass\\n')\n"
                             "    except OSError:\n        pass\n" + ADD, {"tampered"}, 2.0),
    "close_report_channel": ("import os\nfor fd in range(3, 1024):\n    try:\n        os.close(fd)\n"
                             "    except OSError:\n        pass\n" + ADD, {"no_report"}, 2.0),
    "tamper_builtins": ("import builtins\nbuiltins.len = lambda x: 3\nbuiltins.exec = lambda *a, **k: None\n"
                        "builtins.AssertionError = None\nbuiltins.abs = lambda x: 0\n"
                        "def add(a, b):\n    return []\n", {"ok"}, 2.0),
    "tamper_sys_modules": ("import sys, math\nclass Fake:\n    isclose = staticmethod(lambda *a, **k: True)\n"
                           "sys.modules['math'] = Fake()\nmath.isclose = lambda *a, **k: True\n"
                           "def add(a, b):\n    return -7\n", {"ok"}, 2.0),
    "steal_nonce_via_frames": ("import sys\nf = sys._getframe(1)\nprint(f.f_locals)\n", {"error"}, 2.0),
    "steal_nonce_via_traceback": ("try:\n    1/0\nexcept Exception as e:\n    f = e.__traceback__.tb_frame\n"
                                  "    print(f.f_back.f_locals)\n", {"error"}, 2.0),
    "steal_nonce_via_generator": ("def g():\n    yield\nit = g()\nprint(it.gi_frame)\n", {"error"}, 2.0),
    "steal_nonce_via_gc": ("import gc\nprint([o for o in gc.get_objects() if isinstance(o, dict)])\n",
                           {"error"}, 2.0),
    "read_proc_mem": ("with open('/proc/self/mem', 'rb') as fh:\n    fh.read(1)\n", {"error"}, 2.0),
    "ctypes": ("import ctypes\nctypes.CDLL(None).kill(0, 9)\n", {"error"}, 2.0),
    "raise_rlimits": ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n" + ADD,
                      {"error"}, 2.0),
    "signal_handler_frames": ("import signal\nsignal.signal(signal.SIGALRM, lambda s, f: print(f.f_back))\n"
                              "signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)\n" + ADD, {"error"}, 2.0),
    "recreate_posix": ("import _imp\nclass Spec:\n    name = 'posix'\n"
                       "posix = _imp.create_builtin(Spec())\nposix.memfd_create('x')\n", {"error"}, 2.0),
    "huge_file_in_workdir": ("with open('big', 'wb') as fh:\n    fh.write(b'x' * (64 << 20))\n" + ADD,
                             {"error", "memory"}, 4.0),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_candidate(name, sentinel):
    program, statuses, timeout_s = HOSTILE[name]
    r, elapsed = run(program, TESTS, timeout_s=timeout_s, cpu_s=1.0 if name == "cpu_spin" else 2.0)
    assert r.score == 0.0, r
    assert r.status in statuses, r
    check_unharmed(r, sentinel, elapsed, timeout_s)
    if name in ("print_gigabytes", "stderr_flood"):
        assert len(r.stdout) + len(r.stderr) <= 2 * 16_384 + 65_536 and elapsed < 1.5
    if name == "cpu_spin":
        assert elapsed < 3.5        # stopped by RLIMIT_CPU, not by the 5 s wall clock


EVIL_EQ = "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"


@pytest.mark.parametrize("program,tests", [
    (EVIL_EQ + "def add(a, b):\n    return AlwaysEqual()\n", TESTS),
    ("class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
     "def add(a, b):\n    return I(0)\n", TESTS),
    (EVIL_EQ + "def add(a, b):\n    return [AlwaysEqual()]\n", ["assert add(1, 2) == [3]"]),
    (EVIL_EQ + "def add(a, b):\n    yield AlwaysEqual()\n", ["assert list(add(1, 2)) == [3]"]),
    (EVIL_EQ + "def fill(lst):\n    lst[:] = [AlwaysEqual()]\n", ["l = [1]\nfill(l)\nassert l == [2]"]),
    ("import collections\ncollections.Counter.__eq__ = lambda s, o: True\n"
     "def add(a, b):\n    return collections.Counter()\n", TESTS),
])
def test_always_equal_hacks_score_zero(program, tests):
    r, _ = run(program, tests)
    assert (r.score, r.status) == (0.0, "ok"), r
    assert set(r.outcomes) == {"UntrustedTypeError"}
    assert run(program, tests, check_types=False)[0].score == 1.0   # what the type check prevents


def test_type_check_accepts_standard_results():
    prog = ("from collections import Counter, deque\n"
            "class Stack:\n    def __init__(self):\n        self.items = []\n"
            "    def push(self, x):\n        self.items.append(x)\n"
            "def count(xs):\n    return Counter(xs)\n"
            "def evens(n):\n    return (i for i in range(n) if i % 2 == 0)\n"
            "def push_all(s, xs):\n    for x in xs:\n        s.push(x)\n    return len(s.items)\n")
    tests = ["from collections import Counter\nassert count('aab') == Counter({'a': 2, 'b': 1})",
             "assert list(evens(5)) == [0, 2, 4]", "s = Stack()\nassert push_all(s, [1, 2]) == 2",
             "assert count([]) == {}"]
    r, _ = run(prog, tests)
    assert (r.score, r.status) == (1.0, "ok"), r


def test_candidate_cannot_add_audit_hooks():
    # CPython silently refuses a new hook when an existing one raises an Exception for the event
    r, _ = run("import sys\nsys.addaudithook(lambda e, a: print('HOOK', e))\nimport json\n" + ADD)
    assert (r.score, r.status) == (1.0, "ok") and "HOOK" not in r.stdout, r


def test_write_outside_workdir(sentinel, tmp_path):
    targets = [tmp_path / "pwned.txt", f"/tmp/opdbench-pwned-{secrets.token_hex(4)}",
               f"/var/tmp/opdbench-pwned-{secrets.token_hex(4)}"]
    for target in targets:
        for prog in (f"open({str(target)!r}, 'w').write('pwned')\n",
                     f"import os\nos.close(os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT))\n",
                     f"import shutil\nopen('x', 'w').write('pwned')\nshutil.copy('x', {str(target)!r})\n",
                     f"import os\nos.symlink({str(target)!r}, 'link')\nopen('link', 'w').write('pwned')\n",
                     f"import os\nfd = os.open({os.path.dirname(str(target))!r}, os.O_RDONLY)\n"
                     f"os.close(os.open({os.path.basename(str(target))!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n",
                     f"open({str(sentinel)!r}, 'w').write('pwned')\n"):
            r, elapsed = run(prog + ADD)
            assert (r.score, r.status) == (0.0, "error"), r
            assert not os.path.exists(target)
            check_unharmed(r, sentinel, elapsed, 2.0)


def test_environment_is_minimal(monkeypatch, sentinel):
    canary = "canary-" + secrets.token_hex(8)
    monkeypatch.setenv("OPDBENCH_SANDBOX_CANARY", canary)
    monkeypatch.setenv("PYTHONPATH", "/nonexistent-pythonpath")
    prog = ("import os, sys\nprint(sorted(os.environ))\nprint(sys.path)\n"
            "try:\n    print(open('/proc/%d/environ' % os.getppid()).read())\nexcept OSError as e:\n"
            "    print('denied', type(e).__name__)\n" + ADD)
    r, elapsed = run(prog)
    assert (r.score, r.status) == (1.0, "ok"), r
    assert canary not in r.stdout and "/nonexistent-pythonpath" not in r.stdout
    assert "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']" in r.stdout and "denied" in r.stdout
    check_unharmed(r, sentinel, elapsed, 2.0)


@pytest.fixture
def listening_server():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


def _assert_no_connection(srv):
    with pytest.raises(BlockingIOError):
        srv.accept()


@pytest.mark.parametrize("audit_hook", [True, False])
def test_network_is_unreachable(listening_server, sentinel, audit_hook):
    port = listening_server.getsockname()[1]
    prog = ("import socket\ns = socket.create_connection(('127.0.0.1', %d), timeout=1)\n"
            "s.sendall(b'exfiltrate')\n" % port + ADD)
    r, elapsed = run(prog, audit_hook=audit_hook)
    if not audit_hook and "netns" not in r.protections:
        pytest.skip("no network namespace here")
    assert (r.score, r.status) == (0.0, "error"), r
    _assert_no_connection(listening_server)
    check_unharmed(r, sentinel, elapsed, 2.0)
    r, elapsed = run("import socket\ns = socket.socket()\ns.bind(('0.0.0.0', %d))\ns.listen()\n" % port + ADD)
    assert (r.score, r.status) == (0.0, "error"), r


# --------------------------------------------------------------------------- the OS layer alone

needs_root = pytest.mark.skipif(not IS_ROOT, reason="uid drop and namespaces need root")


@needs_root
def test_protections_applied_here():
    r, _ = run(ADD)
    prot = set(r.protections)
    for p in ("netns", "mountns", "hide", "ro_root", "tmpfs_workdir", "ipcns", "rlimits", "no_new_privs",
              "pdeathsig", "process_group", "audit_hook"):
        assert p in prot, r.protections
    assert f"uid:{r.uid}" in prot and r.uid not in (0, os.getuid())


@needs_root
def test_os_layer_blocks_kill_write_env_and_hidden_files(sentinel, tmp_path):
    target = tmp_path / "pwned.txt"
    prog = (
        "import os, signal\n"
        "def attempt(f):\n"
        "    try:\n        f()\n        return 'ALLOWED'\n    except OSError as e:\n        return type(e).__name__\n"
        "print('kill', attempt(lambda: os.kill(os.getppid(), signal.SIGKILL)))\n"
        "print('kill1', attempt(lambda: os.kill(1, signal.SIGKILL)))\n"
        f"print('write', attempt(lambda: open({str(target)!r}, 'w')))\n"
        "print('tmp', attempt(lambda: open('/tmp/opdbench-pwned', 'w')))\n"
        "print('shm', attempt(lambda: open('/dev/shm/opdbench-pwned', 'w')))\n"
        "print('etc', attempt(lambda: open('/etc/opdbench-pwned', 'w')))\n"
        "print('environ', attempt(lambda: open('/proc/%d/environ' % os.getppid()).read()))\n"
        "print('mem', attempt(lambda: open('/proc/self/mem', 'rb')))\n"
        "def listing(path):\n"
        "    try:\n        return 'VISIBLE' if os.listdir(path) else 'EMPTY'\n"
        "    except OSError as e:\n        return type(e).__name__\n"
        f"print('repo', listing({os.path.dirname(os.path.dirname(__file__))!r}))\n"
        "print('setuid', attempt(lambda: os.setuid(0)))\n"
        "open('ok.txt', 'w').write('fine')\n" + ADD)
    r, elapsed = run(prog, audit_hook=False)
    assert (r.score, r.status) == (1.0, "ok"), r
    for line in ("kill PermissionError", "kill1 PermissionError", "setuid PermissionError"):
        assert line in r.stdout, r.stdout
    # The checkout is covered by an empty tmpfs, or gone with a hidden parent (a clone under /tmp).
    assert "repo EMPTY" in r.stdout or "repo FileNotFoundError" in r.stdout, r.stdout
    for key in ("write", "tmp", "shm", "etc", "environ", "mem"):
        assert f"{key} ALLOWED" not in r.stdout, r.stdout
    assert not target.exists() and not os.path.exists("/tmp/opdbench-pwned")
    check_unharmed(r, sentinel, elapsed, 2.0)


@needs_root
def test_os_layer_bounds_forks_and_kills_daemons(sentinel):
    prog = (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"               # a daemon: double fork + setsid, outside the group
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        print('DAEMON', os.getpid(), flush=True)\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('FORKS', n, e.errno, flush=True)\n" + ADD)
    r, elapsed = run(prog, audit_hook=False, timeout_s=3.0)
    assert (r.score, r.status) == (1.0, "ok"), r
    forks = int(r.stdout.split("FORKS ")[1].split()[0])
    assert 0 < forks < 32, r.stdout                      # RLIMIT_NPROC, enforced for the sandbox uid
    daemon = int(r.stdout.split("DAEMON ")[1].split()[0])
    assert not _live(daemon)
    check_unharmed(r, sentinel, elapsed, 3.0)


# --------------------------------------------------------------------------- degraded modes, threads

def test_without_uid_drop_the_python_guards_still_hold(monkeypatch, sentinel):
    import opdbench.sandbox as sandbox
    monkeypatch.setattr(sandbox, "_pick_uid", lambda: None)   # what a non-root parent gets
    r, _ = run(ADD)
    assert (r.score, r.status) == (1.0, "ok"), r
    assert r.uid is None and not any(p.startswith(("uid:", "netns", "mountns")) for p in r.protections)
    assert {"rlimits", "process_group", "audit_hook"} <= set(r.protections)
    for name in ("kill_parent", "fork_bomb", "print_gigabytes", "sleep_forever", "read_proc_mem"):
        program, statuses, timeout_s = HOSTILE[name]
        r, elapsed = run(program, timeout_s=timeout_s)
        assert r.score == 0.0 and r.status in statuses, (name, r)
        check_unharmed(r, sentinel, elapsed, timeout_s)


def test_concurrent_calls_are_independent():
    from concurrent.futures import ThreadPoolExecutor
    progs = [ADD, "def add(a, b):\n    return 3\n", "import time\ntime.sleep(100)\n", "def add(a, b)"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: run_tests(p, TESTS, timeout_s=1.0), progs))
    assert [(r.score, r.status) for r in results] == [
        (1.0, "ok"), (0.5, "ok"), (0.0, "timeout"), (0.0, "syntax_error")]


# --------------------------------------------------------------------------- batches (run_many)

HALF = "def add(a, b):\n    return 3\n"          # passes the first of TESTS only


def test_empty_batch():
    assert run_many([]) == [] and run_many(iter(())) == [] and score_many([]) == []


def test_batch_preserves_order():
    # add(a, b) = a + b + k passes exactly the tests below whose offset is k: a score per program
    tests = [f"assert add(1, 1) == {2 + k}" for k in range(4)] + ["assert add(0, 0) >= 0"]
    programs = [f"def add(a, b):\n    return a + b + {k}\n" for k in (3, 0, 2, 1, 2, 0, 3, 1)]
    results = run_many([(p, tests) for p in programs], workers=2)
    assert [r.outcomes.index("pass") for r in results] == [3, 0, 2, 1, 2, 0, 3, 1]
    assert [r.score for r in results] == [0.4] * len(programs)
    assert len({r.pid for r in results}) == len(programs)           # a fresh process each
    assert score_many([(ADD, TESTS), (HALF, TESTS)], workers=1) == [1.0, 0.5]


def test_batch_bad_jobs_never_raise():
    jobs = [None, 42, (ADD,), (ADD, TESTS, "extra"), (None, TESTS), (b"def add(a, b): return a", TESTS),
            (ADD, None), (ADD, [None, "assert add(1, 1) == 2"]), object(), (ADD, TESTS)]
    results = run_many(jobs, workers=2, timeout_s="bogus", memory_mb=-5)
    assert [r.status for r in results] == ["invalid_input"] * 6 + ["ok", "ok", "invalid_input", "ok"]
    assert [r.score for r in results] == [0.0] * 6 + [0.0, 0.5, 0.0, 1.0]
    assert run_many(None) == [] and run_many(42) == [] and score_many(42, workers="x") == []


@pytest.mark.parametrize("workers", [1, 2])
def test_hostile_candidates_in_a_batch_leave_benign_ones_alone(workers, sentinel):
    """Every hostile kind, each between two benign candidates, in one batch: each hostile one is
    contained and scores 0, each benign one scores exactly what it scores alone."""
    timeout_s = 3.0
    jobs, expect = [(ADD, TESTS)], [("benign", 1.0, {"ok"})]
    for name, (program, statuses, _) in HOSTILE.items():
        jobs += [(program, TESTS), (HALF, TESTS)]
        expect += [(name, 0.0, statuses), ("benign", 0.5, {"ok"})]
    t0 = time.monotonic()
    results = run_many(jobs, workers=workers, timeout_s=timeout_s, cpu_s=1.0)
    elapsed = time.monotonic() - t0
    assert len(results) == len(jobs)
    for (name, score, statuses), r in zip(expect, results):
        assert (r.score, r.status in statuses) == (score, True), (name, r)
        assert r.seconds < timeout_s + 1.0, (name, r)           # a candidate costs at most its limit
        check_unharmed(r, sentinel, r.seconds, timeout_s)
    # ... and the batch costs no more than its candidates (however the slow ones fell to the
    # workers): nothing stalls it beyond their own limits
    assert elapsed < sum(r.seconds for r in results) / workers + timeout_s + 3.0, elapsed
    if IS_ROOT:
        assert len({r.uid for r in results}) == len(results)    # a fresh uid for every candidate


@pytest.mark.parametrize("privileged", [True, False])
def test_each_candidate_gets_an_empty_workdir(monkeypatch, privileged):
    import opdbench.sandbox as sandbox
    if not privileged:
        monkeypatch.setattr(sandbox, "_pick_uid", lambda: None)   # what a non-root parent gets
    writer = "import os\nos.makedirs('d/e')\nopen('d/left.txt', 'w').write('x')\n" + ADD
    reader = "import os\nprint(sorted(os.listdir('.')))\n" + ADD
    results = run_many([(writer, TESTS), (reader, TESTS)] * 2, workers=1)
    assert [(r.score, r.status) for r in results] == [(1.0, "ok")] * 4, results
    assert [r.stdout for r in results[1::2]] == ["[]\n"] * 2


def test_a_supervisor_that_died_is_replaced_and_the_job_retried(monkeypatch):
    import opdbench.sandbox as sandbox
    real_run, killed = sandbox._Supervisor.run, []

    def run_on_a_dead_supervisor_once(self, program, tests):
        if not killed:          # e.g. OOM-killed, or killed by a candidate in the non-root mode
            self.proc.kill()
            self.proc.wait()
            killed.append(self.proc.pid)
        return real_run(self, program, tests)
    monkeypatch.setattr(sandbox._Supervisor, "run", run_on_a_dead_supervisor_once)
    results = run_many([(ADD, TESTS), (HALF, TESTS)], workers=1)
    assert killed and [(r.score, r.status) for r in results] == [(1.0, "ok"), (0.5, "ok")], results


@needs_root
def test_os_layer_leftovers_do_not_reach_the_next_candidate(sentinel):
    """With the Python guards off: files, a System V shared-memory segment and a setsid daemon
    left by one candidate are all gone before the next one (same supervisor) starts."""
    key = 0x5EED0000 + secrets.randbelow(1 << 16)
    leaver = (
        "import ctypes, os, time\n"
        "open('left.txt', 'w').write('x')\n"
        f"print('SHM', ctypes.CDLL(None).shmget({key}, 4096, 0o1666), flush=True)\n"   # IPC_CREAT|0666
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        print('DAEMON', os.getpid(), flush=True)\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\n" + ADD)
    checks = ["import os\nassert os.listdir('.') == []",
              f"import ctypes\nassert ctypes.CDLL(None).shmget({key}, 0, 0) == -1"]
    results = run_many([(leaver, TESTS), (ADD, TESTS + checks)], workers=1, audit_hook=False, timeout_s=3.0)
    left, nxt = results
    assert (left.score, left.status) == (1.0, "ok"), left
    assert int(left.stdout.split("SHM ")[1].split()[0]) >= 0, left.stdout   # the segment was made
    assert not _live(int(left.stdout.split("DAEMON ")[1].split()[0]))
    assert (nxt.score, nxt.status) == (1.0, "ok"), nxt
    assert "ipcns" in nxt.protections and nxt.uid != left.uid
    for r in results:
        check_unharmed(r, sentinel, r.seconds, 3.0)
