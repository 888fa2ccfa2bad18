"""Every tool is a console command (pyproject.toml [project.scripts]) with one flag convention (absl):
`--help` exits 0 with a usage line that names the tool's positional arguments, a wrong number of
positional arguments is a one-line `error: usage: ...` with exit 2, and no flag is parsed and ignored."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_layout import LIB, import_edges, package_modules

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
TOOLS_DIR = REPO / "lib" / "inrcompress" / "tools"
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]

# The positional arguments each command takes (the rest take none); evaluate's are its subcommands.
POSITIONAL = {
    "inr-encode": ("INPUT_IMAGE", "OUTPUT.inr"),
    "inr-decode": ("INPUT.inr", "OUTPUT.png"),
    "inr-decode-shape": ("INPUT.inr", "OUTPUT.obj|.ply|.off"),
}
SUBCOMMANDS = {"inr-evaluate"}


def tool_main(command: str):
    module, _, name = SCRIPTS[command].partition(":")
    return getattr(importlib.import_module(module), name)


def run_as_command(command: str, args: list[str], monkeypatch) -> int:
    """Call the entry point as the console script does: no argv, the command line in sys.argv."""
    monkeypatch.setattr(sys, "argv", [command, *args])
    return tool_main(command)()


def test_every_tool_module_has_a_console_command():
    modules = {p.stem for p in TOOLS_DIR.glob("*.py")} - {"__init__", "flags"}
    commanded = {target.partition(":")[0].rsplit(".", 1)[-1] for target in SCRIPTS.values()}
    assert modules - commanded == set(), "tools without a console command in pyproject.toml"
    assert all(command.startswith("inr-") for command in SCRIPTS)
    assert set(POSITIONAL) | SUBCOMMANDS <= set(SCRIPTS)


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_entry_point_is_a_main_function(command):
    assert SCRIPTS[command].endswith(":main")
    assert callable(tool_main(command))


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_help_shows_the_usage_line_with_positional_arguments(command, monkeypatch, capsys):
    assert run_as_command(command, ["--help"], monkeypatch) == 0
    out = capsys.readouterr().out
    usage = out.splitlines()[0]
    if command in SUBCOMMANDS:
        assert usage.startswith(f"usage: {command} ")
        return
    assert usage == f"usage: {' '.join([command, *POSITIONAL.get(command, ())])} [--flag=value ...]"
    assert re.search(r"^  --\w+: ", out, re.M), "the flags are listed"


@pytest.mark.parametrize("command", sorted(set(SCRIPTS) - SUBCOMMANDS))
def test_a_wrong_number_of_positional_arguments_is_a_usage_error(command, monkeypatch, capsys):
    expected = POSITIONAL.get(command, ())
    args = list(expected[:-1]) if expected else ["stray"]
    assert run_as_command(command, args, monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: usage: {' '.join([command, *expected])} [--flag=value ...]")
    assert "\n" not in err


def test_a_subcommand_shows_and_checks_its_positional_arguments(monkeypatch, capsys):
    """inr-evaluate bd takes one or more test curves (a variadic positional argument)."""
    assert run_as_command("inr-evaluate", ["bd", "--help"], monkeypatch) == 0
    usage = capsys.readouterr().out.splitlines()[0]
    assert usage == "usage: inr-evaluate bd TEST_CURVE... [--flag=value ...]"
    assert run_as_command("inr-evaluate", ["bd", "--anchor=anchor.json"], monkeypatch) == 2
    assert capsys.readouterr().err.startswith(f"error: {usage} (got 0 positional arguments)")


def test_the_paper_scripts_name_themselves_in_the_usage_line(capsys):
    """Called in-process with an argv (the paper scripts' wrappers, tests), the tool names itself."""
    from inrcompress.tools.decode import main

    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: decode.py INPUT.inr OUTPUT.png [--flag=value ...]")


def test_installed_console_command_runs():
    """The command pip installed next to this Python runs (make setup reinstalls on a pyproject change)."""
    executable = Path(sys.executable).parent / "inr-decode"
    if not executable.exists():
        pytest.skip(f"{executable} is not installed (pip install -e . installs the console commands)")
    done = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: inr-decode INPUT.inr OUTPUT.png")


# -- no flag that is parsed and ignored -------------------------------------------------------------

@pytest.mark.parametrize("command, flag", [
    ("inr-overfit-meta", "--batch_size=4"),       # the paper's flag: one image is one batch
    ("inr-quantize3d", "--l1_reg=0.1"),           # the paper's script defined these and never read them
    ("inr-quantize3d", "--entropy_reg=0.1"),
])
def test_a_paper_only_flag_refuses_a_value_it_would_ignore(command, flag, monkeypatch, capsys):
    assert run_as_command(command, [flag], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: flag {flag}: can only be") and "\n" not in err


@pytest.mark.parametrize("command", sorted(set(SCRIPTS) - SUBCOMMANDS))
def test_a_bad_device_is_refused_before_any_work(command, monkeypatch, capsys):
    module = importlib.import_module(SCRIPTS[command].partition(":")[0])
    if "device" not in module.build_flags():
        pytest.skip(f"{command} has no --device")
    args = [f"x{i}" for i in range(len(POSITIONAL.get(command, ())))]
    assert run_as_command(command, [*args, "--device=gpu0"], monkeypatch) == 2
    assert capsys.readouterr().err.startswith("error: flag --device=gpu0: must be auto or a torch device")


def _names_read(path: Path) -> set[str]:
    """Names a module reads as flag values: d["name"], d.get("name"), ("name", ...) key lists,
    fv.name, and dataclass fields (the configs built from the flags by their field names)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and \
                not (isinstance(node.value, ast.Name) and node.value.id == "fv"):  # fv["x"].help = ... defines
            names.add(node.slice.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names.update(e.value for e in node.elts if isinstance(e, ast.Constant))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and \
                isinstance(node.value, ast.Name) and node.value.id == "fv":
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            names.update(s.target.id for s in node.body if isinstance(s, ast.AnnAssign)
                         and isinstance(s.target, ast.Name))
    return {n for n in names if isinstance(n, str)}


def _reachable(module: str) -> set[str]:
    """The package modules a module imports, transitively (tools/flags.py only defines flags)."""
    edges = {}
    for edge in import_edges(LIB):
        edges.setdefault(edge.importer, set()).add(edge.imported)
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, ()))
    return seen - {"inrcompress.tools.flags"}


@pytest.mark.parametrize("command", sorted(set(SCRIPTS) - SUBCOMMANDS))
def test_every_flag_of_a_tool_is_read_by_the_code_it_runs(command):
    """A flag name that no module the tool reaches reads is parsed and ignored. (A static check: it
    cannot see a key read from another dictionary of the same name; the behavioural tests here and
    in the tools' own tests cover the flags that were ignored before.)"""
    from inrcompress.tools import flags as inr_flags

    module = SCRIPTS[command].partition(":")[0]
    modules = package_modules(LIB)
    read = set().union(*(_names_read(modules[m]) for m in _reachable(module) if m in modules))
    fv = importlib.import_module(module).build_flags()
    # a paper-only flag is refused at any value but its one (test_a_paper_only_flag_refuses_...)
    unread = set(inr_flags.values(fv)) - read - inr_flags.paper_only_flags(fv)
    assert not unread, f"{command} defines flags that nothing it runs reads: {sorted(unread)}"


def test_the_flag_read_check_sees_an_unread_name(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def run(flag_values, fv):\n    fv['dataset'].help = 'x'\n"
                      "    return flag_values['epochs'], flag_values.get('lr'), fv.seed, ('bitwidth', 'code')\n")
    assert _names_read(source) == {"epochs", "lr", "seed", "bitwidth", "code"}  # not "dataset"

