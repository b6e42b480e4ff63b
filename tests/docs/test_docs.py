"""The documentation: README.md stays a short front door, every relative link and #anchor resolves, every --flag the
docs name exists in the parser of its program, every plain-text pointer to a file or section resolves, the docs
speak of the project and its users, docs/protocol.md names real flags, and no tracked file points outside the
repository."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from unittest import mock

from helpers import REPO_ROOT, tracked_files

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    """Return README.md and every page of docs/."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def headings(path: Path) -> list[str]:
    """Return the titles of a Markdown file's headings (outside code blocks)."""
    found, in_code = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.append(line.lstrip("#").strip())
    return found


def anchors(path: Path) -> set[str]:
    """Return the #anchors GitHub gives the headings of a Markdown file."""
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in headings(path)}


def test_protocol_page_names_real_flags_and_every_policy_with_measured_baselines() -> None:
    from options.evaluate_options import EvaluateOptions

    page = (REPO_ROOT / "docs" / "protocol.md").read_text()
    assert "protocol.md" in (REPO_ROOT / "docs" / "evaluation.md").read_text()
    options = EvaluateOptions()
    options.gather_options(["--sets", "x=y"])
    known = set(options.parser._option_string_actions)
    flags = set(re.findall(r"`(--[a-z_]+)", page))
    assert {"--align", "--keep_size", "--psnr", "--pred", "--pred_resize", "--epoch"} <= flags
    assert flags - known - {"--if_align", "--val_align", "--val_keep_size"} == set()  # DSRNet's; training's
    for policy in ("released", "original", "align32"):
        rows = [line for line in page.splitlines() if line.startswith(f"| {policy} |")]
        assert {row.split("|")[2].strip() for row in rows} >= {"ceilnet_synthetic100", "real_pairs5"}, policy


def test_readme_is_at_most_250_lines():
    assert len((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in markdown_files():
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            file_part, _, anchor = target.partition("#")
            destination = (page.parent / file_part).resolve() if file_part else page
            if not destination.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_no_tracked_file_points_outside_the_repository():
    needles = ("../" + "shared", "SP" + "EC", "issue" + " #")  # split, so that this file does not match itself
    offending = []
    for name in tracked_files():
        path = REPO_ROOT / name
        if not path.is_file() or path.suffix in (".png", ".jpg", ".npz", ".pth"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offending += [f"{name}: {needle}" for needle in needles if needle in text]
    assert not offending, offending


# ----- every --flag the docs name exists in the parser of its command -------------------------------------------

# How the docs name a program of this project (a token of a command line) -> the parser that reads its flags.
# train.sh, test.sh and the sbatch scripts pass their arguments on to train.py, test.py and evaluate.py.
COMMAND_TOKENS = {
    "train.py": "train.py", "train.sh": "train.py", "slurm/train.sbatch": "train.py",
    "test.py": "test.py", "test.sh": "test.py", "slurm/test.sbatch": "test.py",
    "evaluate.py": "evaluate.py", "slurm/evaluate.sbatch": "evaluate.py",
    "remove_reflection.py": "remove_reflection.py",
    "tools/gpu_check.sh": "tools.gpu_check",
    "scripts/setup_env.sh": "scripts/setup_env.sh",
}
DRIVERS = ("train.py", "test.py", "evaluate.py")
# Flags of other programs that the docs name, by program (a token of the command line that starts it).
OTHER_PROGRAMS = {
    "torchrun": {"--standalone", "--nproc_per_node", "--rdzv_endpoint", "--rdzv_id", "--max_restarts"},
    "pip": {"--no-build-isolation", "--no-deps", "--index-url", "--no-index", "--find-links", "--only-binary",
            "--python-version", "--platform"},
    "sbatch": {"--nodes", "--gpus-per-node", "--cpus-per-task", "--requeue", "--open-mode", "--signal", "--time",
               "--partition", "--account", "--mem", "--output", "--gres"},
    "srun": {"--ntasks-per-node", "--kill-on-bad-exit", "--gpus-per-task"},
    "scancel": {"--signal"},
    "squeue": {"--me"},
    "tensorboard": {"--logdir"},
    "visdom": {"--hostname"},
}
# Flags of the other codebases that docs/protocol.md compares (not programs the docs run).
OTHER_CODEBASES = {"--if_align"}
CODE_BLOCK = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")


def program_of(token: str) -> str | None:
    """Return the program a command-line token starts (this project's or another's), or None."""
    token = token.strip("'\"[]()")
    for name, program in COMMAND_TOKENS.items():
        if token == name or token.endswith("/" + name):
            return program
    if re.fullmatch(r"(?:\./)?scripts/\w+\.py", token):
        return token.removeprefix("./")
    if re.fullmatch(r"tools[./]\w+(?:\.py)?", token):
        return "tools." + re.split(r"[./]", token)[1]
    base = token.rsplit("/", 1)[-1]
    return next((other for other in OTHER_PROGRAMS if base == other or base.startswith(other + ".")), None)


def command_flags(line: str, program: str | None = None) -> tuple[list[tuple[str | None, str]], str | None]:
    """Return (program, flag) for every --flag of one command line, the program being the one started before the flag
    on the line (None: no program precedes it; program: the one a continued line started), and the line's last
    program."""
    found = []
    for token in re.split(r"[\s|;]+", line):
        program = program_of(token) or program
        found += [(program, flag.split("=")[0]) for flag in FLAG.findall(token)]
    return found, program


def programs_named(text: str) -> set[str]:
    """Return this project's programs that a piece of text names."""
    return {program for token in re.split(r"[\s`,;:()]+", text)
            if (program := program_of(token)) and program not in OTHER_PROGRAMS}


def named_flags(page: Path) -> list[tuple[str, str | None, set[str], str]]:
    """Return (flag, program, context, where) for every --flag in a page's code blocks and code spans.

    program is the one the flag is given to on its command line: in a code block the program started before it on
    its line (a line indented under it or after a backslash continues it), in a code span the one the span names
    before it. A flag without one (prose, a table, a layout) gets the context of the programs named in its
    paragraph, its section and its page, and train.py, test.py and evaluate.py. Python blocks hold no commands.
    """
    text = page.read_text(encoding="utf-8")
    prose = CODE_BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    page_programs = programs_named(text) | set(DRIVERS)
    result = []
    for block in CODE_BLOCK.finditer(text):
        if block.group(1).strip() == "python":
            continue
        first, program = text.count("\n", 0, block.start(2)) + 1, None
        lines = block.group(2).splitlines()
        k = 0
        while k < len(lines):
            start, line = k, lines[k]
            while line.endswith("\\") and k + 1 < len(lines):  # a command continued on the next line
                k += 1
                line = line[:-1] + " " + lines[k]
            found, program = command_flags(line, program if line[:1].isspace() else None)
            result += [(flag, given_to, page_programs, f"{page.name}:{first + start}") for given_to, flag in found]
            k += 1
    for section in re.split(r"\n(?=#)", prose):
        for paragraph in re.split(r"\n\s*\n", section):
            context = programs_named(paragraph) | programs_named(section) | page_programs
            for span in CODE_SPAN.finditer(paragraph):
                result += [(flag, given_to, context, f"{page.name}: `{span.group(1)}`")
                           for given_to, flag in command_flags(span.group(1))[0]]
    return result


class _Parsed(Exception):
    """Carries the parser that a program built, stopped where it would parse."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def built_parser(start: Callable[[], object]) -> argparse.ArgumentParser:
    """Return the parser that start() builds, stopped before it parses anything (the program does not run)."""
    def stop(parser: argparse.ArgumentParser, *args, **kwargs):
        raise _Parsed(parser)

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", stop):
        try:
            start()
        except _Parsed as parsed:
            return parsed.parser
    raise AssertionError(f"{start} built no parser")


def script_module(path: Path) -> ModuleType:
    """Return a program of scripts/ imported from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def program_flags() -> dict[str, set[str]]:
    """Return the flags of every program of this project, from the parsers the programs build (in this process).

    The drivers' parsers hold the flags of their default model and dataset; gpu_check.sh takes --prepare and the
    bundle's flags (tools/gpu_bundle.py); a shell script's flags are the "--flag" literals it compares.
    """
    import remove_reflection  # noqa: TID251 (its parser is what the docs name)
    from options.evaluate_options import EvaluateOptions
    from options.test_options import TestOptions
    from options.train_options import TrainOptions

    parsers = {}
    for name, options in zip(DRIVERS, (TrainOptions(), TestOptions(), EvaluateOptions()), strict=True):
        base = options.make_parser()
        parsers[name] = options.make_parser(base.get_default("model"), base.get_default("dataset_mode"), True)
    parsers["remove_reflection.py"] = built_parser(lambda: remove_reflection.parse_args([]))
    modules = {f"scripts/{path.name}": script_module(path) for path in sorted((REPO_ROOT / "scripts").glob("*.py"))}
    modules |= {f"tools.{path.stem}": importlib.import_module(f"tools.{path.stem}")
                for path in sorted((REPO_ROOT / "tools").glob("*.py")) if path.stem != "__init__"}
    for name, module in modules.items():
        start = getattr(module, "parse_args", None) or getattr(module, "main", None)
        if start is not None:  # the modules that programs share have neither
            parsers[name] = built_parser(lambda s=start: s([]) if inspect.signature(s).parameters else s())
    flags = {name: set(parser._option_string_actions) for name, parser in parsers.items()}
    flags["tools.gpu_check"] |= flags["tools.gpu_bundle"] | {"--prepare"}
    for script in ("scripts/setup_env.sh",):
        flags[script] = set(re.findall(r'"(--[\w-]+)"', (REPO_ROOT / script).read_text(encoding="utf-8")))
    return flags


def unknown_flags(pages: list[Path], flags: dict[str, set[str]]) -> list[str]:
    """Return 'where: --flag: ...' for every flag a page names that the parser of its program lacks (a flag without
    a program: that no program of its context has, nor another program's list)."""
    flags = {**OTHER_PROGRAMS, **flags}
    others = set().union(*OTHER_PROGRAMS.values(), OTHER_CODEBASES)
    unknown = []
    for page in pages:
        for flag, program, context, where in named_flags(page):
            if program is not None and flag not in flags.get(program, ()):
                unknown.append(f"{where}: {flag} is not a flag of {program}")
            elif program is None and flag not in set().union(others, *(flags.get(p, ()) for p in context)):
                unknown.append(f"{where}: {flag} is a flag of none of {', '.join(sorted(context))}")
    return unknown


# ----- every plain-text pointer to a file or a section resolves ----------------------------------------------------

# A pointer to a section of a Markdown file in prose or a comment: "docs/training.md, 'Resuming'", "(README,
# Installation)", 'README "Installation"', "docs/method.md §4", "docs/gpu.md#torchrun" (the title: the heading's
# or its beginning); and the README in brackets alone or "see" it alone, which name no section.
SECTION_POINTER = re.compile(
    r"(?<![\w/.-])(?P<file>README(?:\.md)?|docs/\w+\.md)"
    r"(?:#(?P<anchor>[\w-]+)|,? ?(?P<quote>['\"])(?P<title>[A-Za-z][^'\"\n]*)(?P=quote)"
    r"|, (?P<bare>[A-Za-z][\w ]*)\)|,? §(?P<number>\d+)|(?P<alone>(?<=README)\)))")
SEE_README = re.compile(r"\bsee (?:the )?README\b(?![.\w,/])")
# A path to a file of the repository in prose or a comment (output folders such as checkpoints/ are not).
FILE_POINTER = re.compile(r"(?<![\w/.<-])(?:\.ci|configs|data|docs|evaluation|models|options|pages|scripts|slurm|tests|"
                          r"tools|training|util)/[\w./-]*\.(?:md|py|sh|sbatch|yaml|toml|txt|jpg)\b")
POINTER_SUFFIXES = (".py", ".sh", ".md", ".sbatch", ".yaml", ".toml", ".txt", "")
# Paths that are not this repository's files: examples of a new model or dataset, and the files of other
# codebases that data/layouts.py and docs/protocol.md cite (each named after its repository).
NOT_OURS = {"models/foo_model.py", "data/foo_dataset.py", "data/bar_dataset.py", "data/reflect_dataset.py",
            "data/sirs_dataset.py", "data/dataset_sir.py", "util/index.py"}


def tracked_text_files() -> list[Path]:
    """Return the repository's tracked files that may point at others: code, scripts, docs, configs."""
    return [REPO_ROOT / name for name in tracked_files()
            if not name.startswith("tests/fixtures/") and Path(name).suffix in POINTER_SUFFIXES
            and (REPO_ROOT / name).is_file() and REPO_ROOT / name != Path(__file__).resolve()]  # this file: patterns


def broken_pointers(files: list[Path]) -> list[str]:
    """Return 'file:line: pointer (why)' for every pointer to a file or section of the repository that does not
    resolve."""
    broken = []
    for path in files:
        for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            where = f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}:{line_no}"
            for match in FILE_POINTER.finditer(line):
                if match.group(0) not in NOT_OURS and not (REPO_ROOT / match.group(0)).exists():
                    broken.append(f"{where}: {match.group(0)} (no such file)")
            for match in SECTION_POINTER.finditer(line):
                target = REPO_ROOT / ("README.md" if match["file"].startswith("README") else match["file"])
                why = section_missing(target, match) if target.exists() else "no such file"
                if why:
                    broken.append(f"{where}: {match.group(0)} ({why})")
            broken += [f"{where}: {match.group(0)} (names no section)" for match in SEE_README.finditer(line)]
    return broken


def section_missing(target: Path, match: re.Match) -> str:
    """Return why the section a SECTION_POINTER match names is not in target ('' when it is there)."""
    titles = [title.lower() for title in headings(target)]
    if match["anchor"] and match["anchor"] not in anchors(target):
        return "no such heading"
    title = (match["title"] or match["bare"] or "").strip().lower()
    if title and not any(heading.startswith(title) for heading in titles):
        return "no such heading"
    if match["number"] and not any(title.startswith(f"{match['number']}.") for title in titles):
        return "no such numbered section"
    if match["alone"] is not None:
        return "names no section"
    return ""


def test_every_flag_named_in_the_docs_exists_in_the_parser_of_its_program():
    assert not unknown_flags(markdown_files(), program_flags())


def test_a_flag_that_leaves_its_parser_fails_the_docs_check(tmp_path, monkeypatch):
    from data.resize_natural_3_dataset import ResizeNatural3Dataset

    page = tmp_path / "page.md"
    page.write_text("```bash\npython train.py --dataroot D \\\n    --dataset_size 8\n```\n\n"
                    "An epoch is `--dataset_size` samples; `test.py --tile_overlap 64` overlaps tiles.\n")
    assert unknown_flags([page], program_flags()) == []
    added = ResizeNatural3Dataset.modify_commandline_options

    def without_dataset_size(parser, is_train):
        add_argument = parser.add_argument
        parser.add_argument = lambda *names, **kw: None if "--dataset_size" in names else add_argument(*names, **kw)
        return added(parser, is_train)

    monkeypatch.setattr(ResizeNatural3Dataset, "modify_commandline_options", staticmethod(without_dataset_size))
    assert unknown_flags([page], program_flags()) == [
        "page.md:2: --dataset_size is not a flag of train.py",
        "page.md: `--dataset_size`: --dataset_size is a flag of none of evaluate.py, test.py, train.py"]


def test_a_flag_given_to_a_program_that_lacks_it_fails_the_docs_check(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\npython train.py --keep_size\ntorchrun --nproc_per_node 2 train.py --no_such_flag\n"
                    "pip install --no-deps -e .\n```\n\n"
                    "Give `remove_reflection.py --tile_overlap 64`, or `--nowhere`; sbatch takes `--requeue`.\n")
    assert unknown_flags([page], program_flags()) == [
        "page.md:2: --keep_size is not a flag of train.py",
        "page.md:3: --no_such_flag is not a flag of train.py",
        "page.md: `remove_reflection.py --tile_overlap 64`: --tile_overlap is not a flag of remove_reflection.py",
        "page.md: `--nowhere`: --nowhere is a flag of none of evaluate.py, remove_reflection.py, test.py, train.py"]


def test_every_pointer_to_a_file_or_a_section_resolves():
    assert not broken_pointers(tracked_text_files())


def test_the_pointer_check_finds_each_kind_of_broken_pointer(tmp_path):
    note = tmp_path / "note.py"
    note.write_text("# docs/training.md, 'Resuming'; docs/usage.md, \"Large images\"; (README, Installation)\n"
                    "# docs/method.md §4; docs/gpu.md#torchrun; models/tiling.py; tools/README.md\n"
                    "# docs/training.md, 'Nowhere'; (README, Performance); docs/method.md §42\n"
                    "# docs/gpu.md#nowhere; (README); see README for more; models/nowhere.py; docs/nowhere.md\n")
    assert broken_pointers([note]) == [
        f"{note}:3: docs/training.md, 'Nowhere' (no such heading)",
        f"{note}:3: README, Performance) (no such heading)",
        f"{note}:3: docs/method.md §42 (no such numbered section)",
        f"{note}:4: models/nowhere.py (no such file)",
        f"{note}:4: docs/nowhere.md (no such file)",
        f"{note}:4: docs/gpu.md#nowhere (no such heading)",
        f"{note}:4: README) (names no section)",
        f"{note}:4: see README (names no section)"]


def test_the_docs_speak_of_the_project_and_its_users():
    """Not of the circumstances they were written in (who ran what where): a reader has the repository only."""
    phrases = re.compile(r"this session|\blent\b|machines have no internet|could not be read here|"
                         r"the issue that|not available here", re.I)
    pages = [*markdown_files(), *REPO_ROOT.glob("*/README.md")]
    found = [f"{page.relative_to(REPO_ROOT)}: {match.group(0)}" for page in pages
             for match in phrases.finditer(page.read_text(encoding="utf-8"))]
    assert not found, found
