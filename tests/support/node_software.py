"""What a GPU node installs, read from its rendered files: anything taken by a bare name.

Issue 10 item 2: nothing installed by a name we do not own. A `pip install` passes when it is
in hash-checking mode (`--require-hashes`, every requirement pinned with its SHA-256) or names
only local files; a container image passes when it is pinned by digest. Used by the template
tests and by the stack tests over every committed stack's user data.
"""

from __future__ import annotations

import re
import shlex

from agentdeploy.images import pinned_image_problem

#: docker options that take a value as the next argument (the ones our units and scripts use,
#: plus the usual ones), so the first other argument is the image.
_DOCKER_VALUE_OPTIONS = {"--name", "--gpus", "--network", "--net", "--ipc", "--volume", "-v", "--env", "-e", "--env-file",
                         "--shm-size", "--user", "-u", "--workdir", "-w", "--entrypoint", "--publish", "-p", "--mount",
                         "--platform", "--restart", "--runtime", "--stop-timeout", "--log-driver", "--ulimit"}
_ASSIGNMENT = re.compile(r"^\s*([A-Z_][A-Z0-9_]*)=(.*)$", re.M)


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def _variables(text: str) -> dict[str, str]:
    return {m[1]: (_words(m[2]) or [""])[0] for m in _ASSIGNMENT.finditer(text)}


def _resolve(word: str, variables: dict[str, str]) -> str:
    word = word.rstrip(";")
    name = word.removeprefix("$").strip("{}")
    return variables.get(name, word) if word.startswith("$") else word


def _pip_problem(words: list[str]) -> str | None:
    at = words.index("install")
    args = words[at + 1:]
    if "--require-hashes" in args:
        return None
    positional = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in ("-r", "-c"))]
    if any(a in ("-r", "--requirement") or a.startswith("--requirement=") for a in args):
        return "installs a requirements file without --require-hashes"
    bare = [a for a in positional if not a.startswith(("/", "$", "./"))]
    return f"installs {bare} by name" if bare or not positional else None


def _docker_image(words: list[str]) -> str | None:
    for verb in ("run", "pull"):
        if verb in words:
            args = words[words.index(verb) + 1:]
            i = 0
            while i < len(args):
                if args[i] in _DOCKER_VALUE_OPTIONS:
                    i += 2
                elif args[i].startswith("-"):
                    i += 1
                else:
                    return args[i]
    return None


def bare_name_installs(text: str) -> list[str]:
    """Lines of `text` (a node's rendered files, concatenated) that install something by a
    bare name: a pip install neither hash-checked nor local, an image without a digest."""
    variables = _variables(text)
    problems: list[str] = []
    for line in text.splitlines():
        words = _words(line)
        commands = [w.rsplit("/", 1)[-1] for w in words]
        if "install" in words and any(c in ("pip", "pip3") for c in commands[:words.index("install")]):
            problem = _pip_problem(words)
            if problem:
                problems.append(f"{line.strip()}: {problem}")
        if any(c == "docker" for c in commands) and ("run" in words or "pull" in words):
            image = _docker_image(words)
            if image is None:
                problems.append(f"{line.strip()}: no image found")
                continue
            ref = _resolve(image, variables)
            problem = pinned_image_problem(ref)
            if problem:
                problems.append(f"{line.strip()}: {problem}")
    return problems
