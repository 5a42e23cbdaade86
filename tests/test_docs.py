"""Docs that run: every code block of README.md and docs/*.md is executed the way a reader
would use it, and every file or page the docs (and the code's docstrings) cite exists.

Each Markdown file is one session, like a notebook: its blocks run in order in one fresh
directory (so a block may use the run an earlier block launched), with a home whose
`~/tensorflow_datasets` is the tests' prepared data. By info string:

  ```python          saved as a script and run with this Python; must exit 0
  ``` (or sh, bash)  shell commands, one per line (`\\` continues one); each is dispatched by
                     COMMANDS below: a launch runs at smoke size (`smoke_argument`), in the
                     document's directory (`experiments/NAME.py` is then the shipped one,
                     `jaxnn.cli.resolve_config`); the others are checked
                     against the test that covers them; `# exits N` at the end of a line
                     says the command must exit N
  ```text, ```json   output or a synopsis, not run

The fast tier runs the documents with nothing to launch or train (RUN_IN_THE_FAST_TIER) and
reads every other one, the README included, without running it (each command has a handler, each launch's config
and fields exist); the slow tier runs every document.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ml_collections
import pytest
from forked_launch import forked_python
from helpers import markdown_blocks, tiered, user_home

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md"))]
NOT_RUN = {"text", "json"}
SHELL = {"", "sh", "bash", "shell"}
# A word that stands for what the reader fills in: a synopsis, to be marked ```text.
PLACEHOLDER = re.compile(r"(?<![\w.-])(DIR|NAME|ARG|FIELD|VALUE|PATH)(?![\w-])|\.\.\.")
EXIT_COMMENT = re.compile(r"#.*\bexits? (\d+)\b")


@dataclasses.dataclass
class Session:
    """One document's run: its working directory and the environment of every command."""

    cwd: Path
    env: dict[str, str]

    @classmethod
    def fresh(cls, tmp_path: Path, home: Path) -> Session:
        cwd = tmp_path / "work"
        cwd.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env |= {
            "HOME": str(home),
            "JAX_PLATFORMS": "cpu",
            "MPLBACKEND": "Agg",
            # jaxnn.run keeps a cache set through JAX: the tests' own, never the user's.
            "JAX_COMPILATION_CACHE_DIR": str(REPO / ".data" / "jax_cache"),
            # Launches too: the documents launch the same smoke programs run after run.
            "JAXNN_COMPILATION_CACHE": str(REPO / ".data" / "jax_cache"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
        return cls(cwd, env)

    def run(self, argv: list[str], where: str, expect: int = 0) -> None:
        """Runs argv ([sys.executable, ...] through tests/forked_launch.py) in the session."""
        if argv[0] == sys.executable:
            done = forked_python(argv[1:], cwd=self.cwd, env=self.env, timeout=300)
        else:
            done = subprocess.run(
                argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300
            )
        assert done.returncode == expect, (
            f"{where}: {shlex.join(argv)} exited {done.returncode}, not {expect}\n"
            + done.stderr[-3000:]
        )


def smoke_config(value: str) -> str:
    """`--config`'s value at smoke size: `X` -> `X:smoke`, `X:ARG` -> `X:ARG,smoke`."""
    path, _, arg = value.partition(":")
    parts = [part for part in arg.split(",") if part]
    return f"{path}:{','.join(parts if 'smoke' in parts else [*parts, 'smoke'])}"


def smoke_argument(argument: str) -> str:
    """One launch argument at smoke size: the config's `smoke` argument, and a step count a
    hundredth of the documented one (so `--config.training.steps=9000` still continues a run)."""
    name, _, value = argument.partition("=")
    if name == "--config":
        return f"--config={smoke_config(value)}"
    if name == "--config.training.steps":
        return f"{name}={max(1, int(value) // 100)}"
    return argument


def _launch(session: Session, argv: list[str], where: str, expect: int) -> None:
    """A launch, `python launch.py ...` or `jaxnn ...`, at smoke size, without a progress bar."""
    args = [smoke_argument(a) for a in (argv[2:] if argv[0] == "python" else argv[1:])]
    entry = [str(REPO / "launch.py")] if argv[0] == "python" else ["-m", "jaxnn.cli"]
    session.run([sys.executable, *entry, *args, "--noprogress"], where, expect)


def _multi_host(session: Session, argv: list[str], where: str, expect: int) -> None:
    """A multi-host launch needs its other hosts: tests/test_multiprocess.py runs those."""
    del session, expect
    assert (REPO / "tests" / "test_multiprocess.py").is_file(), where


def _study(session: Session, argv: list[str], where: str, expect: int) -> None:
    """`python experiments/studies/NAME.py --workdir=...`: the study tests run every study at
    --smoke (tests/test_studies.py; the transfer study in tests/test_transfer.py); here the
    script must exist and be one they run."""
    del session, expect
    name = Path(argv[1]).stem
    assert (REPO / argv[1]).is_file(), f"{where}: no {argv[1]}"
    tests = [(REPO / "tests" / f).read_text() for f in ("test_studies.py", "test_transfer.py")]
    assert any(f'"{name}"' in text or f'/ "{name}.py"' in text for text in tests), (
        f"{where}: no study test runs {argv[1]}"
    )


def _benchmark(session: Session, argv: list[str], where: str, expect: int) -> None:
    """`python benchmarks/NAME.py ...`: minutes to hours, so not run here; the script must exist
    and tests/test_benchmark_smoke.py must run it at its smoke size."""
    del session, expect
    assert (REPO / argv[1]).is_file(), f"{where}: no {argv[1]}"
    smoke = (REPO / "tests" / "test_benchmark_smoke.py").read_text()
    assert Path(argv[1]).name in smoke, f"{where}: no benchmark smoke test runs {argv[1]}"


def _make(session: Session, argv: list[str], where: str, expect: int) -> None:
    """`make TARGET`: the Makefile has the target (the suite is `make test` itself)."""
    del session, expect
    targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M)
    assert set(argv[1:]) <= set(targets), f"{where}: no make target {argv[1:]}"


def _pip_install(session: Session, argv: list[str], where: str, expect: int) -> None:
    """`pip install .`: tests/test_wheel.py builds and installs the wheel."""
    del session, expect
    assert "install" in argv, f"{where}: only pip install is documented"


def _tensorboard(session: Session, argv: list[str], where: str, expect: int) -> None:
    """`tensorboard --logdir D`: D holds event files (tests/test_tensorboard.py reads them)."""
    del expect
    logdir = next(a.removeprefix("--logdir=") for a in argv if a.startswith("--logdir"))
    if logdir == "--logdir":
        logdir = argv[argv.index("--logdir") + 1]
    assert any((session.cwd / logdir).rglob("*tfevents*")), f"{where}: no events in {logdir}"


Handler = Callable[[Session, list[str], str, int], None]
# (does this command line match, what to do with it), first match wins.
COMMANDS: list[tuple[Callable[[list[str]], bool], Handler]] = [
    (lambda a: any(x.startswith("--coordinator_address") for x in a), _multi_host),
    (lambda a: a[:2] == ["python", "launch.py"] or a[0] == "jaxnn", _launch),
    (lambda a: a[0] == "python" and a[1].startswith("experiments/studies/"), _study),
    (lambda a: a[0] == "python" and a[1].startswith("benchmarks/"), _benchmark),
    (lambda a: a[0] == "make", _make),
    (lambda a: a[0] == "pip" or a[:3] == ["python", "-m", "pip"], _pip_install),
    (lambda a: a[0] == "tensorboard", _tensorboard),
]


def shell_commands(code: str) -> list[tuple[list[str], int]]:
    """A shell block's commands as (argv, expected exit code); `\\` joins lines."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        exit_code = EXIT_COMMENT.search(line)
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append((argv, int(exit_code.group(1)) if exit_code else 0))
    return commands


@pytest.fixture(scope="session")
def docs_home(tmp_path_factory) -> Path:
    """One user home for every document's session: their environments are then the same, so
    one forked-launch server (per worker) imports once for all of them."""
    return user_home(tmp_path_factory.mktemp("docs"))


# The documents whose blocks run in the fast tier: those with nothing to launch or train, and
# the scikit-learn page (its estimators train in seconds: the fast tier runs them here). Every
# other document (the README too, whose Python block tests/test_wheel.py also runs) runs in the
# slow tier; in the fast tier its blocks are read by test_every_code_block_is_one_the_harness_runs.
RUN_IN_THE_FAST_TIER = {
    "docs/architecture.md",
    "docs/benchmarks.md",
    "docs/reliability.md",
    "docs/results.md",
    "docs/sklearn.md",
    "docs/topics.md",
}


@pytest.mark.parametrize("document", tiered(DOCUMENTS, RUN_IN_THE_FAST_TIER))
def test_every_code_block_runs(document, tmp_path, docs_home):
    session = Session.fresh(tmp_path, docs_home)
    for info, code, line in markdown_blocks((REPO / document).read_text()):
        where = f"{document}:{line}"
        language = info.split()[0] if info else ""
        if language in NOT_RUN:
            continue
        if language == "python":
            script = session.cwd / f"block_{line}.py"
            script.write_text(code)
            session.run([sys.executable, script.name], where)
            continue
        assert language in SHELL, f"{where}: a ```{language} block; mark output ```text"
        for argv, expect in shell_commands(code):
            assert not PLACEHOLDER.search(shlex.join(argv)), (
                f"{where}: {shlex.join(argv)} is a synopsis: mark its block ```text"
            )
            handler = next((h for matches, h in COMMANDS if matches(argv)), None)
            assert handler is not None, (
                f"{where}: the harness cannot run {shlex.join(argv)}: mark it ```text or "
                "add it to tests/test_docs.py's COMMANDS"
            )
            handler(session, argv, where, expect)


def _config_fields(value: str) -> ml_collections.ConfigDict | None:
    """The config a shipped `--config` value gives at smoke size (None for a file the document
    writes itself, or a name the launcher refuses)."""
    path, _, arg = smoke_config(value).partition(":")
    if not (REPO / path).is_file():
        path = f"experiments/{path}.py"
    if not (REPO / path).is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("documented_config", REPO / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg)


def _check_launch(argv: list[str], where: str) -> None:
    """A launch's `--config` loads at smoke size and each `--config.FIELD=VALUE` names a field."""
    arguments = argv[2:] if argv[0] == "python" else argv[1:]
    value = next((a.partition("=")[2] for a in arguments if a.startswith("--config=")), None)
    assert value is not None, f"{where}: {shlex.join(argv)} names no --config"
    config = _config_fields(value)
    for argument in arguments:
        name = argument.partition("=")[0]
        if config is None or not name.startswith("--config."):
            continue
        node = config
        for part in name.removeprefix("--config.").split("."):
            assert part in node, f"{where}: {name} names no field of {value}"
            node = node[part]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_code_block_is_one_the_harness_runs(document):
    """What the fast tier reads of every document without running it: each block's language is
    one the harness knows, each Python block compiles, each command has a handler and no
    placeholder, and each launch's config loads at smoke size with fields it has."""
    for info, code, line in markdown_blocks((REPO / document).read_text()):
        where = f"{document}:{line}"
        language = info.split()[0] if info else ""
        if language in NOT_RUN:
            continue
        if language == "python":
            compile(code, where, "exec")
            continue
        assert language in SHELL, f"{where}: a ```{language} block; mark output ```text"
        for argv, _ in shell_commands(code):
            assert not PLACEHOLDER.search(shlex.join(argv)), f"{where}: {shlex.join(argv)}"
            handler = next((h for matches, h in COMMANDS if matches(argv)), None)
            assert handler is not None, f"{where}: the harness cannot run {shlex.join(argv)}"
            if handler is _launch:
                _check_launch(argv, where)


# Pages other branches are writing, linked from README.md's Documentation list before they land:
# whoever merges the last of them removes this set.
# The files whose text (docs, docstrings) may cite repository paths, and the cited paths that
# must not exist: the bad-input table's missing config (and any path with a NAME placeholder).
DOCUMENTED = ["README.md", "Makefile", "launch.py", "docs/**/*.md", "experiments/**/*.py"]
DOCUMENTED += ["jaxnn/**/*.py", "benchmarks/**/*.py", "tests/**/*.py"]
MEANT_TO_BE_MISSING = {"experiments/nope.py", "experiments/does_not_exist.py"}
CITED_PATH = re.compile(
    r"(?<![\w/.-])((?:docs|experiments|jaxnn|benchmarks|tests)/[\w./-]*\w\.(?:py|md|png))"
)
# A Markdown link or image to a file, relative to the document: [text](target#anchor).
LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)\s#]+)(?:#[^)]*)?\)")


def test_every_path_the_docs_and_docstrings_cite_exists():
    missing = sorted(
        f"{document.relative_to(REPO)}: {cited}"
        for pattern in DOCUMENTED
        for document in REPO.glob(pattern)
        for cited in CITED_PATH.findall(document.read_text())
        if "NAME" not in cited and cited not in MEANT_TO_BE_MISSING and not (REPO / cited).exists()
    )
    assert not missing, missing


def test_every_relative_link_of_the_docs_leads_to_a_file():
    broken = sorted(
        f"{document}: {target}"
        for document in DOCUMENTS
        for target in LINK.findall((REPO / document).read_text())
        if not ((REPO / document).parent / target).exists()
    )
    assert not broken, broken
