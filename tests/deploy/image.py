"""What the Dockerfile puts in the image, assembled here without Docker.

No image can be built on the test machines (no registry for the base image),
so the image's tree is assembled instead: the build stage's ``COPY`` lines
copy their sources out of the build context (``.dockerignore`` applied, as
Docker applies it), the lock file's distributions stand in for its ``pip
install -r`` (taken from the test environment, which must hold every one of
them, with what they require), and its ``pip install --no-deps .`` runs as
written. Nothing else of the repository is reachable from the result.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]


@dataclass
class Stage:
    """One ``FROM ... AS name`` stage: its instructions, continuation lines joined."""

    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """The global ``ARG`` defaults and every stage by name."""
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "FROM":
            current = Stage(rest.split(" AS ")[-1].strip())
            stages[current.name] = current
        elif current is None and word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif current is not None:
            current.instructions.append((word, rest.strip()))
    return args, stages


def stage_args(stage: Stage, globals_: dict[str, str]) -> dict[str, str]:
    """The ``ARG`` defaults visible in ``stage`` (its own over the global ones)."""
    values = dict(globals_)
    for arg in stage.all("ARG"):
        name, _, default = arg.partition("=")
        values[name] = default
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced, as Docker replaces build arguments."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text
    )


def env_of(stage: Stage, values: dict[str, str]) -> dict[str, str]:
    """The stage's ``ENV`` lines, substituted."""
    env: dict[str, str] = {}
    for line in stage.all("ENV"):
        for pair in shlex.split(substitute(line, {**values, **env})):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def _matches(pattern: list[str], path: list[str]) -> bool:
    """Docker's .dockerignore matching: ``**`` spans any number of segments."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_matches(pattern[1:], path[i:]) for i in range(len(path) + 1))
    head = bool(path) and fnmatch.fnmatchcase(path[0], pattern[0])
    return head and _matches(pattern[1:], path[1:])


def ignored(relative: str, rules: list[str]) -> bool:
    """Whether the build context leaves ``relative`` out (the last matching rule wins)."""
    parts = relative.split("/")
    verdict = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.removeprefix("!").strip("/").split("/")
        # A rule that matches a folder leaves out everything under it.
        if any(_matches(pattern, parts[:n]) for n in range(1, len(parts) + 1)):
            verdict = not negated
    return verdict


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copy_from_context(source: str, destination: str, workdir: Path) -> None:
    """One ``COPY source destination``: a folder's contents, or a file, out of the context."""
    rules = dockerignore()
    base = ROOT / source.rstrip("/")
    into = workdir / destination
    if base.is_file():
        files = {base: into / base.name if destination.endswith("/") else into}
    else:
        files = {p: into / p.relative_to(base) for p in sorted(base.rglob("*")) if p.is_file()}
    for path, target in files.items():
        if ignored(path.relative_to(ROOT).as_posix(), rules):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _locked_names(lock: Path) -> list[str]:
    lines = lock.read_text().splitlines()
    return [line.split("==")[0] for line in lines if line and not line.startswith("#")]


def _closure(names: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions named, and everything they require here."""
    environment = default_environment()
    seen: dict[str, importlib.metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        seen[name] = importlib.metadata.distribution(name)
        for text in seen[name].requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(
                {**environment, "extra": ""}
            ):
                pending.append(requirement.name)
    return list(seen.values())


def link_distributions(lock: Path, target: Path) -> None:
    """The lock's distributions (with their requirements) as links in ``target``.

    The test environment's copies stand in for ``pip install -r lock``; a
    locked distribution missing here fails, naming it.
    """
    missing = []
    for name in _locked_names(lock):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    assert not missing, f"locked but not installed in the test environment: {missing}"
    target.mkdir(parents=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for dist in _closure(_locked_names(lock)):
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = site / top
            if source.exists() and not (target / top).exists() and not top.endswith(".pth"):
                (target / top).symlink_to(source)


@dataclass(frozen=True)
class Image:
    """An assembled image: its venv's ``bin``, its environment, a home and working directory."""

    bin: Path
    env: dict[str, str]
    home: Path

    def run(self, *argv: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        return subprocess.run(
            command, cwd=self.home, env={**self.env, **env},
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def start(self, *argv: str, **env: str) -> subprocess.Popen[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        return subprocess.Popen(
            command, cwd=self.home, env={**self.env, **env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def assemble(where: Path) -> Image:
    """The Dockerfile's image under ``where``: its build stage's files and installs."""
    text = (ROOT / "Dockerfile").read_text()
    globals_, stages = parse_dockerfile(text)
    build, runtime = stages["build"], stages["runtime"]
    values = stage_args(build, globals_)
    venv, src = where / "opt" / "venv", where / "src"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    where_purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", where_purelib],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    for line in build.all("COPY"):
        *sources, destination = substitute(line, values).split()
        for source in sources:
            copy_from_context(source, destination, src)
    runs = substitute(" ".join(build.all("RUN")), values)
    locks = re.findall(r'-r "?([^"\s]+)"?', runs)
    assert locks, "the build stage installs no lock file"
    link_distributions(src / locks[0], where / "deps")
    Path(purelib, "image-deps.pth").write_text(str(where / "deps") + "\n")
    _install_the_project(build, venv, src)
    home = where / "home"
    home.mkdir()
    env = env_of(runtime, stage_args(runtime, globals_))
    env["PATH"] = env["PATH"].replace("/opt/venv", str(venv)).replace("$PATH", os.defpath)
    env |= {"HOME": str(home), "TORCH_HOME": str(where / "torch"),
            "BATCHSERVE_CACHE_DIR": str(home / "cache")}  # fmt: skip
    return Image(venv / "bin", env, home)


def _install_the_project(build: Stage, venv: Path, src: Path) -> None:
    """The build stage's ``pip install --no-deps .``, as written (build isolation included)."""
    (command,) = [
        part.strip()
        for run in build.all("RUN")
        for part in run.split("&&")
        if part.strip().startswith("pip install --no-deps")
    ]
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", *shlex.split(command)],
        cwd=src, capture_output=True, text=True, timeout=600,
        env={"PATH": f"{venv / 'bin'}:{os.defpath}", "HOME": str(src),
             "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
