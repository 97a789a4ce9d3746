"""What ``poller validate`` can find out about the functions' environments without invoking them.

The config's own rules already hold (a URL starts with http://, MemorySize and Timeout are in
Lambda's ranges); these checks look at the machine, as ``poller run`` would meet it:

* a ``Handler`` that runs in process environments is imported in a child process started as an
  environment is started: the same interpreter, working directory (the task root) and variables
  (Lambda's, then ``Environment.Variables``), so a module that reads its variables at import is
  judged with them, and one that only imports beside the config file is caught. Each import is
  bounded in time;
* a ``Command``'s program exists and may be executed (on PATH, or relative to the working
  directory);
* a ``Url`` has a host and a valid port;
* a ``RuntimeApi`` address can be listened on now.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from poller.cli.loading import HandlerEntry, handler_problems
from poller.config.functions import FunctionConfig
from poller.config.settings import PollerConfig
from poller.engine.invocation import FunctionIdentity
from poller.functions import is_typed, load_handler
from poller.functions.catalog import lambda_variables

__all__ = ["IMPORT_SECONDS", "TYPED_IN_PROCESS", "environment_problems", "probe_handler"]

#: The longest a handler's import in a probe environment may take.
IMPORT_SECONDS = 20.0
#: Probe environments started at once.
_PROBES_AT_ONCE = 4
#: Marks the probe's answer among whatever the handler's module prints while it imports.
_ANSWER = "poller-probe-answer:"
_PROBE = (
    "import json, sys\n"
    "from poller.cli.environment_checks import probe_handler\n"
    f"print({_ANSWER!r} + json.dumps(probe_handler(sys.argv[1], sys.argv[2])), flush=True)\n"
)
#: What a typed handler named from process environments is told (the worker's own check says
#: the same).
TYPED_IN_PROCESS = (
    "{reference!r} is a typed handler(batch), which runs in the worker: name it from a "
    '[[functions]] entry with Isolation = "thread"'
)


def environment_problems(
    config: PollerConfig, *, import_seconds: float = IMPORT_SECONDS
) -> list[str]:
    """A problem line for each function whose environment ``poller run`` could not set up, in
    the order of the functions (the imports run side by side: each starts an interpreter)."""

    def check(function: FunctionConfig) -> list[str]:
        where = f"functions[{function.function_name!r}]"
        way = function.way
        if way == "process" and function.handler is not None:
            return _import_problems(config, function, f"{where}.Handler", import_seconds)
        if way == "command" and function.command:
            return _command_problems(function.command[0], f"{where}.Command")
        if way == "url" and function.url is not None:
            return _url_problems(function.url, f"{where}.Url")
        if way == "runtime_api" and function.runtime_api is not None:
            return _listen_problems(function.runtime_api, f"{where}.RuntimeApi")
        return []

    with ThreadPoolExecutor(max_workers=_PROBES_AT_ONCE) as pool:
        return [problem for found in pool.map(check, config.functions) for problem in found]


# --- handlers, imported as an environment imports them -------------------------------------------


def probe_handler(reference: str, where: str) -> list[str]:
    """Run in the probe process: import ``reference`` and say what would stop an environment
    from calling it (nothing: an empty list)."""
    problems = handler_problems([HandlerEntry(where, reference, "process")])
    if problems:
        return problems
    if is_typed(load_handler(reference)):
        return [f"{where}: " + TYPED_IN_PROCESS.format(reference=reference)]
    return []


def _import_problems(
    config: PollerConfig, function: FunctionConfig, where: str, seconds: float
) -> list[str]:
    assert function.handler is not None
    task_root = os.getcwd()
    endpoint = None if config.aws.embedded else config.aws.endpoint_url
    variables = lambda_variables(
        function,
        FunctionIdentity(function.function_name),
        region=config.aws.region,
        endpoint_url=endpoint,
        task_root=task_root,
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, function.handler, where],
            cwd=task_root,
            env={**os.environ, **variables},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [f"{where}: importing {function.handler!r} took longer than {seconds:g} s"]
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_ANSWER):
            answer: list[str] = json.loads(line[len(_ANSWER) :])
            return answer
    last = " | ".join(done.stderr.strip().splitlines()[-3:]) or "no output"
    return [
        f"{where}: importing {function.handler!r} in its environment ended the process "
        f"(exit code {done.returncode}): {last}"
    ]


# --- commands, URLs, addresses -------------------------------------------------------------------


def _command_problems(program: str, where: str) -> list[str]:
    if os.sep in program:
        path = Path(program)
        if not path.is_file():
            return [f"{where}: {program!r} is not a file (relative to {os.getcwd()})"]
        if not os.access(path, os.X_OK):
            return [f"{where}: {program!r} is not executable (chmod +x it)"]
        return []
    if shutil.which(program) is None:
        return [f"{where}: {program!r} is not on PATH ({os.environ.get('PATH', '')})"]
    return []


def _url_problems(url: str, where: str) -> list[str]:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as error:
        return [f"{where}: {url!r} is not a valid URL: {error}"]
    if not parts.hostname:
        return [f"{where}: {url!r} names no host"]
    return []


def _listen_problems(address: str, where: str) -> list[str]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, protocol, _, bound = infos[0]
        with socket.socket(family, kind, protocol) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(bound)
    except OSError as error:
        return [f"{where}: poller cannot listen on {address!r}: {error}"]
    return []
