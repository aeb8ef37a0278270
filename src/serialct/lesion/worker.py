"""One warm inference process for many scans (issue 21).

Each workflow ``lesion`` job is a process of its own (``script:``, so that the rule keeps its
pinned conda env). Started cold, each would pay the interpreter, the torch import, the model
load and, on a GPU node, CUDA initialisation: seconds, against a fraction of a second of GPU
work per scan, and a packed SLURM job of 50 lesion jobs would pay it 50 times. So a lesion job
hands its scan to a *worker*: a process that imports torch and loads the model once and then
serves every lesion job of the same Snakemake process (a laptop run, or one packed SLURM job).
Jobs, outputs and incremental reruns stay per scan; only the process is shared.

- Scope: one worker per host, Snakemake process, model file and device. It exits within
  ``OWNER_POLL_S`` of that Snakemake process and after ``IDLE_S`` without work, so it never
  outlives the run nor serves a scan with code other than the run's own.
- SLURM: a packed job's Snakemake (the job's batch step) runs each member in an ``srun`` step
  with a Snakemake of its own (snakemake-executor-plugin-slurm-jobstep), and a worker started
  inside a step would end with it. So that Snakemake starts the job's worker while it reads the
  workflow, before any step (``start_for_slurm_job``, called from workflow/rules/lesion.smk),
  and lesion jobs in a step use that worker or, if there is none, run in their own process.
- Prefetch: a request's scan is read, and its output written, in the request's own thread. On
  a GPU inference runs one scan at a time (a lock), so the next scan is read while the current
  one runs; on the CPU requests run side by side, each with its job's threads, as the jobs would.
- Same numbers: the worker calls the in-process code (``steps.segment_lesions``) with the
  job's threads; ``tests/test_lesion_worker.py`` compares the outputs voxel for voxel.
- Failures: a bad input comes back as the same one-line ``InputError`` (the scan-failure path
  of ``serialct.scan_failure`` is unchanged), anything else fails the job with the worker's
  message and traceback; a file-system error stays an OSError. A worker that cannot be started
  or reached, or dies mid-scan, leaves the job to run in-process (logged). A job that goes away
  (killed, timed out) before its scan runs or is written gets nothing run or written.

``lesion.worker: false`` in the config runs every scan in its job's own process. The worker's
own log (``<socket>.log``) is removed when its Snakemake process has gone, unless the
environment sets ``SERIALCT_WORKER_LOG``; each scan's lines are in its job's log anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import os
import resource
import signal
import socket
import stat as stat_module
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from serialct.errors import InputError
from serialct.failures import EXIT_INPUT, describe

log = logging.getLogger("serialct")

IDLE_S: Final = 300.0  # a worker with no request for this long exits (the owner check is first)
OWNER_POLL_S: Final = 1.0  # how often the worker checks that its Snakemake process still runs
START_TIMEOUT_S: Final = 120.0  # a worker not listening by then (torch import, CUDA) is given up
KEEP_LOG: Final = bool(os.environ.get("SERIALCT_WORKER_LOG"))  # keep the worker's own log
MAX_ANCESTORS: Final = 16  # /proc parents walked to find the Snakemake process
MAX_SOCKET_PATH: Final = 107  # bytes (sockaddr_un.sun_path on Linux, less its final NUL)


def snakemake_owner(pid: int | None = None) -> int | None:
    """Pid of the Snakemake process above ``pid`` (default: this process), or None (not run
    by Snakemake, or no /proc). A script job runs as Snakemake -> shell -> python."""
    pid = os.getppid() if pid is None else pid
    for _ in range(MAX_ANCESTORS):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        names = [os.path.basename(a) for a in argv]
        if b"snakemake" in names or any(
            a == b"-m" and b == b"snakemake" for a, b in zip(argv, argv[1:], strict=False)
        ):
            return pid
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the command in parens
        if pid <= 1:
            return None
    return None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not). Linux
    /proc only, as ``snakemake_owner``: without it no worker is ever started."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def socket_path(owner: int | str, model: Path, device: str) -> Path:
    """The worker's Unix socket: a private folder of this user under the temp dir, named by
    host, owner, model file and device (short: sockets have a 107-byte path limit)."""
    folder = Path(tempfile.gettempdir()) / f"serialct-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    mine = folder.lstat()  # not a link, this user's, nobody else's: else no worker
    if not stat_module.S_ISDIR(mine.st_mode) or mine.st_uid != os.getuid() or mine.st_mode & 0o077:
        raise OSError(f"{folder}: not a private folder of this user")
    stat = Path(model).stat()
    key = f"{socket.gethostname()}|{owner}|{Path(model).resolve()}|{stat.st_mtime_ns}|{device}"
    path = folder / f"lesion-{hashlib.sha1(key.encode()).hexdigest()[:16]}.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise OSError(f"{path}: longer than a Unix socket path may be (set TMPDIR shorter)")
    return path


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall((json.dumps(message) + "\n").encode())


def _lines(conn: socket.socket) -> Iterator[dict[str, Any]]:
    buffer = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


# --- the job's side ------------------------------------------------------------------------


def segment_lesions(
    ct: Path, lung: Path, model: Path, out: Path, config: dict[str, Any], threads: int
) -> None:
    """``steps.segment_lesions`` in this run's warm worker (started if there is none), or in
    this process when ``lesion.worker`` is off, no Snakemake process is above this one, or the
    worker cannot be reached."""
    request = {"ct": str(Path(ct).resolve()), "lung": str(Path(lung).resolve()),
               "model": str(Path(model).resolve()), "out": str(Path(out).resolve()),
               "config": config, "threads": int(threads)}  # fmt: skip
    job = os.environ.get("SLURM_JOB_ID")
    in_step = job is not None and "SLURM_STEP_ID" in os.environ
    owner = None if in_step else snakemake_owner()
    if config["lesion"].get("worker", True) and (in_step or owner is not None):
        key = f"slurm-{job}" if in_step else owner
        try:  # in a SLURM step: the job's worker, never one of its own (it would end with it)
            path = socket_path(key, Path(model), config["device"])  # type: ignore[arg-type]
            with _open(path) if in_step else _connect(path, owner) as conn:  # type: ignore[arg-type]
                if _ask(conn, request):
                    return
        except OSError as exc:
            log.warning("lesion worker not available (%s): running in this process", exc)
    from serialct import steps

    steps.segment_lesions(ct, lung, model, out, config, threads=threads)


def start_for_slurm_job(model: Path, config: dict[str, Any], argv: list[str]) -> None:
    """In the batch step of a SLURM job whose targets (``argv``'s ``--target-jobs``) include
    lesion jobs: start the job's worker, serving this Snakemake process, and wait until it
    listens. Anywhere else (no SLURM job, inside a step, other targets): nothing."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or "SLURM_STEP_ID" in os.environ or not config["lesion"].get("worker", True):
        return
    if "--target-jobs" not in argv:
        return
    targets = itertools.takewhile(
        lambda a: not a.startswith("-"), argv[argv.index("--target-jobs") + 1 :]
    )
    if not any(t.split(":", 1)[0] == "lesion" for t in targets):
        return
    try:
        _connect(socket_path(f"slurm-{job}", Path(model), config["device"]), os.getpid()).close()
    except OSError as exc:
        log.warning("lesion worker not started (%s): lesion jobs run in their own process", exc)


def _connect(path: Path, owner: int) -> socket.socket:
    """A connection to the worker at ``path``; starts it first (one starter at a time)."""
    with contextlib.suppress(OSError):
        return _open(path)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):
            return _open(path)  # another job started it meanwhile
        path.unlink(missing_ok=True)  # a dead worker's socket
        logfile = path.with_suffix(".log")
        with open(logfile, "ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "serialct.lesion.worker", str(path), "--owner", str(owner)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        log.info("started lesion worker pid %d (log %s)", worker.pid, logfile)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                return _open(path)
            except OSError:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise OSError(f"lesion worker did not start, see {logfile}") from None
                time.sleep(0.1)


def _open(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        raise
    return conn


def _ask(conn: socket.socket, request: dict[str, Any]) -> bool:
    """Send the scan, relay the worker's log lines; True when the worker answered."""
    _send(conn, request)
    for message in _lines(conn):  # OSError: the worker went away (the caller runs it here)
        if "log" in message:
            log.log(message["level"], "worker: %s", message["log"])
        elif message.get("ok"):
            return True
        elif "errno" in message:
            raise OSError(message["errno"], message["strerror"], message["filename"])
        elif message.get("exit") == EXIT_INPUT:
            raise InputError(message["error"])
        else:
            raise RuntimeError(f"lesion worker: {message['error']}")
    log.warning("lesion worker went away mid-scan: running in this process")
    return False


# --- the worker's side ---------------------------------------------------------------------


class _ToClients(logging.Handler):
    """Each request thread's log records, sent to the job that made the request (one handler
    for all threads: adding and removing handlers while others log can drop records)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.conns: dict[int, socket.socket] = {}

    def emit(self, record: logging.LogRecord) -> None:
        conn = self.conns.get(record.thread or 0)
        if conn is not None:
            with contextlib.suppress(OSError):
                _send(conn, {"log": record.getMessage(), "level": record.levelno})


def _client_gone(conn: socket.socket) -> bool:
    try:
        return not conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:  # nothing sent, still connected
        return False
    except OSError:
        return True


def _failure(exc: Exception) -> dict[str, Any]:
    """What the job needs to fail as it would have in-process: a file-system error stays an
    OSError (it fails the job: serialct.scan_failure), the rest is message + exit status."""
    failure = describe(exc)
    message: dict[str, Any] = {"error": failure.message, "exit": failure.exit_code}
    if isinstance(exc, OSError) and exc.errno is not None:
        message.update(errno=exc.errno, strerror=exc.strerror, filename=exc.filename)
    return message


class Worker:
    def __init__(self, path: Path, owner: int) -> None:
        self.path, self.owner = path, owner
        # one network at a time on a GPU; on the CPU the jobs' own threads, side by side
        self.net_lock: threading.Lock | None = None
        self.busy, self.served, self.last = 0, 0, time.monotonic()
        self.state = threading.Lock()
        self.relay = _ToClients()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))  # before torch is imported: a bad path fails at once
        self.inode = path.stat().st_ino

    def serve(self) -> None:
        import torch

        self.net_lock = threading.Lock() if torch.cuda.is_available() else None
        log.addHandler(self.relay)
        self.server.listen(64)
        self.server.settimeout(OWNER_POLL_S)
        log.info("lesion worker pid %d serving %s for Snakemake pid %d",
                 os.getpid(), self.path, self.owner)  # fmt: skip
        try:
            while self._wanted():
                try:
                    conn, _ = self.server.accept()
                except TimeoutError:
                    continue
                with self.state:
                    self.busy += 1
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
        finally:
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            log.info("lesion worker exits: %d scans, CPU %.1f s",
                     self.served, cpu.ru_utime + cpu.ru_stime)  # fmt: skip
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == self.inode:  # (not a later worker's socket)
                    self.path.unlink()
            self.server.close()
            if not _alive(self.owner):  # nobody can ask for this worker again
                self.path.with_suffix(".lock").unlink(missing_ok=True)
                if not KEEP_LOG:
                    self.path.with_suffix(".log").unlink(missing_ok=True)

    def _wanted(self) -> bool:
        with self.state:
            if not _alive(self.owner):
                return self.busy > 0  # finish what runs, then go
            return self.busy > 0 or time.monotonic() - self.last < IDLE_S

    def _handle(self, conn: socket.socket) -> None:
        done = False
        try:
            self.relay.conns[threading.get_ident()] = conn
            request = next(_lines(conn), None)
            if request is None:  # a connection that asked nothing (start_for_slurm_job's)
                return
            log.info("lesion worker pid %d (for Snakemake pid %d)", os.getpid(), self.owner)
            from serialct import steps

            steps.segment_lesions(
                Path(request["ct"]), Path(request["lung"]), Path(request["model"]),
                Path(request["out"]), request["config"], threads=request["threads"],
                net_lock=self.net_lock, keep=lambda: not _client_gone(conn),
            )  # fmt: skip
            _send(conn, {"ok": True})
            done = True
        except Exception as exc:  # every failure goes back to the job that asked
            message = _failure(exc)
            if message["exit"] != EXIT_INPUT:
                log.exception("lesion worker: %s", message["error"])  # the traceback, relayed
            with contextlib.suppress(OSError):
                _send(conn, message)
        finally:
            self.relay.conns.pop(threading.get_ident(), None)
            conn.close()
            with self.state:
                self.busy -= 1
                self.served += done
                self.last = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serialct's warm lesion-inference worker")
    parser.add_argument("socket", type=Path)
    parser.add_argument("--owner", type=int, required=True, help="Snakemake pid to serve")
    args = parser.parse_args(argv)
    from serialct.logs import setup

    setup()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # (SLURM's end of job): clean up
    Worker(args.socket, args.owner).serve()  # torch is imported once, there
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
