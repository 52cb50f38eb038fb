"""A tiny random-weight Qwen2 checkpoint and real worker processes serving it over a real socket.

The checkpoint is saved with the pinned `transformers`; its tokenizer is trained on the fly. Its text is gibberish,
so the lm_head rows of special tokens and of tokens holding anything but letters are zeroed: greedy decoding then
never ends early and writes letters only, which survive post-processing. Tests assert protocol behaviour, not text.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from inference import protocol

REPO = pathlib.Path(__file__).resolve().parents[2]
SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
            "<|repo_name|>", "<|file_sep|>"]
CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n\nclass Greeter:\n    def hello(self, name):\n        print('hello', name)\n",
    "for index in range(10):\n    total = total + index * 2\n",
    "from util import helper\nvalue = helper(3)\n",
]


def build_tiny_model(path: pathlib.Path) -> pathlib.Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.save(str(path / "tokenizer.json"))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=vocab, intermediate_size=128, max_position_embeddings=8192,
                         tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for token_id in range(vocab):
            text = tok.decode([token_id], skip_special_tokens=False)
            if token_id in {tok.token_to_id(s) for s in SPECIALS} or not text.strip() or not text.strip().isalpha():
                model.lm_head.weight[token_id].zero_()
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> pathlib.Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2")


def worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class WorkerProcess:
    """`python -m lsp worker` started for a test; `address` comes from its ready line."""

    def __init__(self, args: list[str], timeout: float = 90.0):
        self.proc = subprocess.Popen([sys.executable, "-m", "lsp", "worker", *args], stdin=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=worker_env(), cwd=REPO)
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        self.address = None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            self.lines.append(line.rstrip())
            if "ready on " in line:
                self.address = line.split("ready on ", 1)[1].split()[0]
                break
        if self.address is None:
            self.stop()
            raise RuntimeError("worker did not become ready:\n" + "\n".join(self.lines[-20:]))

    def connect(self, timeout: float = 20.0) -> socket.socket:
        if self.address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.address[5:])
        else:
            host, _, port = self.address[4:].rpartition(":")
            sock = socket.create_connection((host, int(port)))
        sock.settimeout(timeout)
        return sock

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def greeted(worker: WorkerProcess, token: str | None = None) -> socket.socket:
    sock = worker.connect()
    protocol.write_frame(sock, protocol.hello(1, token=token))
    reply = protocol.read_frame(sock)
    assert reply["op"] == "hello", reply
    return sock


@pytest.fixture(scope="module")
def worker(tiny_model, tmp_path_factory):
    sock_dir = tmp_path_factory.mktemp("sock")
    os.chmod(sock_dir, 0o700)
    process = WorkerProcess(["--model", str(tiny_model), "--device", "cpu", "--socket", str(sock_dir / "w.sock"),
                             "--max-frame-bytes", "65536"])
    yield process
    process.stop()
