"""scripts/execute_book.py: every chapter is executed, and the chapters whose
results depend on speed run alone (the others run two at a time)."""

import ast
import importlib.util

import pytest

from conftest import REPO_ROOT

SPEC = importlib.util.spec_from_file_location(
    "execute_book", REPO_ROOT / "scripts" / "execute_book.py"
)
execute_book = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(execute_book)

# What a chapter calls when it measures speed, or when it may autotune (which
# measures speed and caches the choice for every later chapter).
TIMING_NAMES = {
    "perf_counter", "time_runs", "time_steps", "timed_fit", "fit_throughput",
    "measure_throughput", "examples_per_second", "matmul_flops", "tune_gan",
    "tune_wgan_gp", "gan_layer_profile", "bias_gradient_times", "describe_machine",
    "per_call_rates",
}
TUNED_BUILDERS = {"build_gan", "build_wgan_gp"}  # tune unless told both settings
TUNED_TRAINERS = ("GanTrainer",)  # classes ending so tune unless told jit_compile


def called_name(call):
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def tunes(call, settings=("precision", "jit_compile")):
    """A call that leaves one of ``settings`` to the tuner."""
    given = {k.arg: k.value for k in call.keywords}
    return any(
        not isinstance(given.get(name), ast.Constant) or given[name].value == "auto"
        for name in settings)


def measures_speed(path):
    notebook = execute_book.read(path)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        lines = [line for line in cell.source.splitlines()
                 if not line.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.Call):
                continue
            name = called_name(node)
            if name in TIMING_NAMES or (name in TUNED_BUILDERS and tunes(node)):
                return True
            if str(name).endswith(TUNED_TRAINERS) and tunes(node, ("jit_compile",)):
                return True
    return False


BOOK = execute_book.chapters(REPO_ROOT)


def test_chapters_follow_the_table_of_contents():
    stems = [path.stem for path in BOOK]
    assert stems[0] == "intro"
    assert stems.index("gan") < stems.index("wgan_gp") < stems.index("performance")
    assert len(stems) == len(set(stems))
    assert all(path.is_file() for path in BOOK)


@pytest.mark.parametrize("path", [p for p in BOOK if execute_book.read(p)],
                         ids=lambda p: p.stem)
def test_chapters_that_measure_speed_run_alone(path):
    if measures_speed(path):
        assert path.stem in execute_book.TIMED, (
            f"{path.name} measures speed or autotunes: add it to TIMED in "
            "scripts/execute_book.py, so that it runs alone")


def test_timed_chapters_exist_and_do_measure():
    stems = {path.stem: path for path in BOOK}
    for stem in execute_book.TIMED:
        assert stem in stems, f"TIMED names {stem!r}, which is not in _toc.yml"
        assert measures_speed(stems[stem]), f"{stem} measures nothing: untime it"


def test_order_puts_the_timed_chapters_first_and_alone(tmp_path):
    paths = [tmp_path / f"{stem}.md" for stem in ("intro", "vae", "data", "gan")]
    alone, together = execute_book.order(paths)
    assert [p.stem for p in alone] == ["gan", "vae"]  # TIMED's order: GAN first
    assert [p.stem for p in together] == ["intro", "data"]


def test_pages_without_code_are_not_notebooks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Just prose\n")
    assert execute_book.read(page) is None
