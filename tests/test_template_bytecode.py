"""Compiled templates kept on disk (TEMPLATE_BYTECODE_DIR, reservations/__init__.py: TemplateBytecode): a new
process loads what an earlier one compiled, an edited template is compiled again, and a folder that cannot be
written costs a compile, never a page."""
import re

import pytest
from flask import render_template

from reservations import create_app
from reservations.extensions import db

CSRF = re.compile(r'name="csrf_token" value="[^"]+"')


def _page_with(app, template: str) -> str:
    with app.test_request_context("/"):
        return render_template(template, message="x")


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "compiled"


@pytest.fixture
def make_app(backend, database_urls, app_config):
    """An app of its own (a process's), on the test's database, with settings on top of the test's."""
    made = []

    def make(**settings):
        made.append(create_app({**app_config, "SQLALCHEMY_DATABASE_URI": database_urls[backend], **settings}))
        return made[-1]

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


def test_a_new_app_loads_the_templates_an_earlier_one_compiled(make_app, folder, monkeypatch):
    first = make_app(TEMPLATE_BYTECODE_DIR=str(folder))
    page = _page_with(first, "error.html")
    kept = list(folder.iterdir())
    assert kept and all(path.suffix == ".cache" for path in kept)  # error.html and base.html

    second = make_app(TEMPLATE_BYTECODE_DIR=str(folder))
    compiled = []
    real_compile = second.jinja_env.compile
    monkeypatch.setattr(second.jinja_env, "compile", lambda *a, **k: compiled.append(a) or real_compile(*a, **k))
    assert CSRF.sub("", _page_with(second, "error.html")) == CSRF.sub("", page)  # each request's own token
    assert compiled == []  # loaded from the folder, not compiled


def test_an_edited_template_is_compiled_again(make_app, folder, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "note.html").write_text("before", encoding="utf-8")
    first = make_app(TEMPLATE_BYTECODE_DIR=str(folder))
    first.jinja_loader.searchpath.insert(0, str(templates))
    assert _page_with(first, "note.html") == "before"

    (templates / "note.html").write_text("after", encoding="utf-8")
    second = make_app(TEMPLATE_BYTECODE_DIR=str(folder))
    second.jinja_loader.searchpath.insert(0, str(templates))
    assert _page_with(second, "note.html") == "after"


def test_a_folder_that_cannot_be_written_still_renders_every_page(make_app, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    app = make_app(TEMPLATE_BYTECODE_DIR=str(blocked / "compiled"))
    response = app.test_client().get("/account/login")
    assert response.status_code == 200 and "csrf_token" in response.get_data(as_text=True)


def test_production_keeps_no_compiled_templates_unless_an_operator_sets_a_folder(make_app, monkeypatch):
    """A folder the app writes and then runs code from would let a bug that writes files run code: production
    compiles in each worker (at its warm-up) unless TEMPLATE_BYTECODE_DIR says otherwise."""
    import config

    monkeypatch.delenv("TEMPLATE_BYTECODE_DIR", raising=False)
    assert config.mode_settings("production")["TEMPLATE_BYTECODE_DIR"] == ""
    assert config.mode_settings("development")["TEMPLATE_BYTECODE_DIR"].endswith("instance/templates")
    assert make_app().jinja_env.bytecode_cache is not None  # the suite's own apps (test mode) keep them
    assert make_app(TEMPLATE_BYTECODE_DIR="").jinja_env.bytecode_cache is None
    monkeypatch.setenv("TEMPLATE_BYTECODE_DIR", "/srv/compiled")
    assert "TEMPLATE_BYTECODE_DIR" not in config.mode_settings("production")  # the operator's folder stands
