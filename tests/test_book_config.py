"""scripts/book_config.py: the repository's address comes from one setting, and
the page buttons that need it are left out when there is none."""

import importlib.util

import pytest
import yaml

from conftest import REPO_ROOT

SPEC = importlib.util.spec_from_file_location(
    "book_config", REPO_ROOT / "scripts" / "book_config.py"
)
book_config = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(book_config)
CONFIG = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())


@pytest.mark.parametrize(
    "remote",
    [
        "https://github.com/owner/repo.git",
        "https://github.com/owner/repo",
        "https://token@github.com/owner/repo.git",
        "git@github.com:owner/repo.git",
        "ssh://git@github.com/owner/repo.git",
    ],
)
def test_github_remotes_become_https(remote):
    assert book_config.github_https_url(remote) == "https://github.com/owner/repo"


@pytest.mark.parametrize(
    "remote", ["https://gitlab.com/owner/repo.git", "/srv/git/repo.git", ""]
)
def test_other_remotes_give_no_address(remote):
    assert book_config.github_https_url(remote) is None


def test_the_environment_variable_wins_over_the_remote():
    environ = {book_config.ENV_VAR: "https://gitlab.com/me/book.git/"}
    found = book_config.repository_url(environ, "git@github.com:owner/repo.git")
    assert found == "https://gitlab.com/me/book"
    assert book_config.repository_url({}, "git@github.com:o/r.git") == (
        "https://github.com/o/r"
    )
    assert book_config.repository_url({book_config.ENV_VAR: " "}, None) is None


def test_a_malformed_address_is_a_clear_error():
    with pytest.raises(ValueError, match="FITBOOK_REPOSITORY_URL must be"):
        book_config.repository_url({book_config.ENV_VAR: "owner/repo"}, None)


def test_an_address_turns_every_button_on():
    config = book_config.book_config(CONFIG, "https://github.com/o/r")
    assert config["repository"]["url"] == "https://github.com/o/r"
    assert all(config["html"][button] for button in book_config.BUTTONS)
    assert config["launch_buttons"]["binderhub_url"] == book_config.BINDERHUB_URL


def test_no_address_leaves_the_buttons_out_and_keeps_the_rest():
    config = book_config.book_config(CONFIG, None)
    assert "url" not in config["repository"]
    assert not any(config["html"][button] for button in book_config.BUTTONS)
    assert config["launch_buttons"]["binderhub_url"] == ""
    unchanged = ("title", "execute", "sphinx", "parse", "bibtex_bibfiles")
    assert {k: config[k] for k in unchanged} == {k: CONFIG[k] for k in unchanged}


def test_the_committed_config_has_no_address_of_its_own():
    # A placeholder would be published as if it were the real repository.
    assert "url" not in CONFIG.get("repository", {})
    assert not any(CONFIG["html"].get(button) for button in book_config.BUTTONS)


def test_main_writes_a_config_the_makefile_can_edit(tmp_path):
    target = tmp_path / "_build" / "_config.book.yml"
    environ = {book_config.ENV_VAR: "https://github.com/o/r"}
    assert book_config.main([str(REPO_ROOT / "_config.yml"), str(target)], environ) == 0
    text = target.read_text()
    # The Makefile's sed lines for book-cached and chapter match these.
    assert "execute_notebooks: force" in text
    assert "suppress_warnings: []" in text
    assert yaml.safe_load(text)["repository"]["url"] == "https://github.com/o/r"
