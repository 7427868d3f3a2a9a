"""lazyllm-edge -i driven through a pseudo-terminal: two turns (the second reuses the first's tokens), Ctrl-C stops a
reply and not the program, /save, /reset, /load (the next turn reuses the loaded tokens), Ctrl-C at the prompt and
EOF exit; and --prompt-cache in one-shot mode."""

import os
import re
import select
import subprocess
import sys
import time

import pytest

from lazyllm_edge.cli import binary_path

pty = pytest.importorskip("pty")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

TIMINGS = re.compile(rb"prompt (\d+) tokens \((\d+) reused from the cache\).*finish: (\w+)")


class Terminal:
    """The CLI on a pseudo-terminal: ^C there is SIGINT to it, as from a keyboard."""

    def __init__(self, args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(str(binary_path()), [str(binary_path()), *args])
        self.buffer = b""

    def read_until(self, pattern: bytes, timeout=120.0) -> bytes:
        """Output up to and including the first `pattern` (waiting for it; the timeout only guards a hang)."""
        deadline = time.monotonic() + timeout
        while pattern not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {pattern!r} in the output; it ends with {self.buffer[-800:]!r}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the CLI exited before {pattern!r}; output ends with {self.buffer[-800:]!r}")
            self.buffer += chunk
        i = self.buffer.index(pattern) + len(pattern)
        out, self.buffer = self.buffer[:i], self.buffer[i:]
        return out

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def turn(self, message: bytes, interrupt: bool):
        """Sends a message; with `interrupt`, ^C once the reply has begun. Returns (prompt tokens, reused, finish)."""
        self.send(message + b"\n")
        self.read_until(message)  # the terminal's echo
        if interrupt:
            self.read_until(b" ")  # some reply text: the reply is running
            self.send(b"\x03")
        m = TIMINGS.search(self.read_until(b"finish: ") + self.read_until(b"\n"))
        self.read_until(b"> ")
        return int(m.group(1)), int(m.group(2)), m.group(3).decode()

    def wait(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            try:
                if ready:
                    os.read(self.fd, 4096)  # drain, so the child never blocks on a full terminal
            except OSError:
                time.sleep(0.05)
        os.kill(self.pid, 9)
        raise AssertionError("the CLI did not exit")


def test_interactive_chat(default_model_path, tmp_path):
    # replies run until interrupted or the context is full (end-of-generation ignored): ^C always finds one running
    term = Terminal(["-m", str(default_model_path), "-i", "-t", "2", "-c", "1024", "--temp", "0", "-n", "-1",
                     "--ignore-eos"])
    term.read_until(b"> ")
    n1, reused1, finish1 = term.turn(b"Tell me a long story about a lighthouse.", interrupt=True)
    assert (reused1, finish1) == (0, "cancelled") and n1 > 5
    n2, reused2, finish2 = term.turn(b"Now tell me one about a ship.", interrupt=True)
    assert finish2 == "cancelled"
    assert reused2 > n1 and n2 < reused2  # the first turn and its reply were not computed again
    file = tmp_path / "chat.bin"
    term.send(f"/save {file}\n".encode())
    saved = int(re.search(rb"saved (\d+) tokens", term.read_until(b"> ")).group(1))
    assert file.is_file() and saved > reused2
    term.send(b"/reset\n")
    term.read_until(b"starts over")
    term.read_until(b"> ")
    term.send(f"/load {tmp_path / 'missing.bin'}\n".encode())
    assert b"error: cannot open" in term.read_until(b"> ")
    term.send(f"/load {file}\n".encode())
    assert int(re.search(rb"loaded (\d+) tokens", term.read_until(b"> ")).group(1)) == saved
    n3, reused3, finish3 = term.turn(b"And a short one about a bird.", interrupt=True)
    assert reused3 == saved and finish3 == "cancelled"
    term.send(b"\x03")  # Ctrl-C at the prompt exits
    assert term.wait() == 0


def test_interactive_exits_at_eof(default_model_path):
    term = Terminal(["-m", str(default_model_path), "-i", "-t", "1", "-c", "256"])
    term.read_until(b"> ")
    term.send(b"\x04")  # ^D: end of input
    assert term.wait() == 0


def test_prompt_cache_one_shot(default_model_path, tmp_path):
    """--prompt-cache: the first run computes the prompt and saves it, the second loads it and computes only the
    prompt's last token; a cache of another model is reported and replaced."""
    cache = tmp_path / "prompt.cache"
    args = [str(binary_path()), "-m", str(default_model_path), "-p", "The history of the printing press", "-n", "4",
            "--temp", "0", "-t", "1", "-c", "256", "--prompt-cache", str(cache)]
    runs = [subprocess.run(args, capture_output=True, timeout=120) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (TIMINGS.search(r.stderr) for r in runs)
    n_prompt = int(first.group(1))
    assert int(first.group(2)) == 0 and cache.is_file()
    assert (int(second.group(1)), int(second.group(2))) == (1, n_prompt - 1)
    cache.write_bytes(b"not a session")
    r = subprocess.run(args, capture_output=True, timeout=120)
    assert r.returncode == 0 and b"not using the prompt cache" in r.stderr
    assert cache.read_bytes()[:8] == b"LZEDGESS"
