"""deploy/ agrees with the app: the units start real entry points, env.example names every setting production
requires and is refused until its placeholders are replaced, nginx sets the headers ProxyFix trusts and keeps
/metrics inside, and the PostgreSQL notes hold for the code (no session-level advisory lock).

Fast and without services: files are parsed, the app is built on an unused SQLite file, and the tools that
can check a file offline do when they are installed (systemd-analyze verify, postgres --describe-config,
nginx -t); only that one assertion is skipped when its tool is absent.
"""
import ast
import configparser
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import FlaskGroup
from gunicorn.config import Config as GunicornConfig
from werkzeug.middleware.proxy_fix import ProxyFix

from reservations import create_app
from reservations.extensions import db

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = ("reservations-web", "reservations-scheduler", "reservations-migrate")
# Where the units expect the checkout; the tests map it onto this repository.
CHECKOUT = "/srv/reservations/app"

# What an operator puts in place of env.example's placeholders (values of the right shape).
HOST = "yoyaku.city.example.jp"
FILLED = {
    "SECRET_KEY": "p3Jk8s0V-2qLw9xYtR7mNc4BfH6dZa1E_uGoTiKyQeWl",
    "DATABASE_URL": "postgresql://reservations:secret@127.0.0.1:1/reservations",  # never connected to
    "PUBLIC_BASE_URL": f"https://{HOST}",
    "TRUSTED_HOSTS": HOST,
    "STRIPE_SECRET_KEY": "sk_live_51HxYzAbCdEfGhIjKlMnOp",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_51HxYzAbCdEfGhIjKlMnOp",
    "STRIPE_WEBHOOK_SECRET": "whsec_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "MAIL_FROM": f"施設予約 <yoyaku@{HOST}>",
    "RATELIMIT_STORAGE_URI": "redis://:secret@127.0.0.1:1/0",
    "ISSUER_NAME": "目黒区 施設予約",
    "ISSUER_NAME_EN": "Meguro City Facility Reservations",
}
# Placeholders production does not check: listed, so that a new placeholder is either refused by
# check_settings or named here on purpose (none: the issuer's names are refused while REPLACE_ME or the demo's).
UNCHECKED_PLACEHOLDERS: set[str] = set()


# --- reading the files ------------------------------------------------------------------------------------

def unit_path(name: str) -> Path:
    return DEPLOY / "systemd" / f"{name}.service"


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(unit_path(name).read_text(encoding="utf-8"))
    return parser


def directives(name: str, section: str) -> list[tuple[str, str]]:
    """Every Key=value of a section in order, repeated keys included, continuation lines joined."""
    found, current, pending = [], None, ""
    for line in unit_path(name).read_text(encoding="utf-8").splitlines():
        if pending:
            line, pending = pending + " " + line.strip(), ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            current = stripped.strip("[]")
        elif current == section:
            key, _, value = stripped.partition("=")
            found.append((key.strip(), value.strip()))
    return found


def values(name: str, section: str, key: str) -> list[str]:
    return [value for k, value in directives(name, section) if k == key]


def exec_start(name: str) -> list[str]:
    (command,) = values(name, "Service", "ExecStart")
    return shlex.split(command)


def in_repo(path: str) -> Path:
    assert path.startswith(CHECKOUT + "/"), path
    return ROOT / path[len(CHECKOUT) + 1:]


def read_env_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile: NAME=value lines, # comments, a value optionally in quotes."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"line {number}: {line!r}"
        assert name not in env, f"{name} is set twice"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[name] = value
    return env


def placeholders(env: dict[str, str]) -> set[str]:
    return {name for name, value in env.items() if "REPLACE_ME" in value or (name == "DATABASE_URL" and not value)}


def nginx_tree(text: str) -> list:
    """nginx's syntax as nested lists: [name, args, children or None] per directive."""
    # A quoted string, a comment (a # where a token would start), a brace or semicolon, a bare word.
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|#[^\n]*|[{};]|[^\s{};"\']+', text)
    stack, words = [[]], []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token in (";", "{"):
            assert words, f"{token} without a directive"
            node = [words[0], [w.strip("\"'") for w in words[1:]], [] if token == "{" else None]
            stack[-1].append(node)
            if token == "{":
                stack.append(node[2])
            words = []
        elif token == "}":
            assert not words and len(stack) > 1, "unbalanced }"
            stack.pop()
        else:
            words.append(token)
    assert not words and len(stack) == 1, "unterminated directive or block"
    return stack[0]


def find(nodes: list, name: str, *args: str) -> list:
    return [n for n in nodes if n[0] == name and tuple(n[1][:len(args)]) == args]


def the_site(tree: list) -> list:
    """The https server block of the site (not the default server that refuses unknown names)."""
    (site,) = [n for n in find(tree, "server")
               if any("443" in d[1][0] for d in find(n[2], "listen")) and find(n[2], "server_name")[0][1] != ["_"]]
    return site[2]


def location(site: list, *args: str) -> list:
    (node,) = find(site, "location", *args)
    return node[2]


def size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", value).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(s|m|min)?", value).groups()
    return int(number) * (60 if unit in ("m", "min") else 1)


def postgresql_settings() -> dict[str, str]:
    settings = {}
    for line in (DEPLOY / "postgresql" / "reservations.conf").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, value = line.partition("=")
            assert sep, line
            assert name.strip() not in settings, f"{name} set twice"
            settings[name.strip()] = value.strip().strip("'")
    return settings


@pytest.fixture(scope="module")
def offline_app(tmp_path_factory):
    """The app in test mode on a SQLite file nothing opens: its CLI, ProxyFix and static folder."""
    database = tmp_path_factory.mktemp("deploy") / "unused.sqlite3"
    return create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}", "PROXY_FIX_X_FORWARDED": 1})


# --- systemd ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", UNITS)
def test_each_unit_parses_and_runs_as_the_service_user_from_the_checkout(name):
    unit = read_unit(name)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["User"] == "reservations"
    assert service["WorkingDirectory"] == CHECKOUT
    assert "/etc/reservations/env" in values(name, "Service", "EnvironmentFile")
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert f"{CHECKOUT}/instance" in service["ReadWritePaths"].split()
    assert exec_start(name)[0].startswith("/srv/reservations/venv/bin/")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_knows_every_directive_of_each_unit(name):
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit_path(name))],
                            capture_output=True, text=True, timeout=60)
    # The venv and the user exist only on a server: everything else systemd says is a mistake in the file.
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip() and "is not executable" not in line]
    assert complaints == []


def test_the_web_unit_runs_gunicorn_sync_workers_on_wsgi_app():
    argv = exec_start("reservations-web")
    assert Path(argv[0]).name == "gunicorn"
    cfg = GunicornConfig()
    options = cfg.parser().parse_args(argv[1:])
    for key, value in vars(options).items():
        if value is not None and key != "args":
            cfg.set(key.lower(), value)  # gunicorn validates each value as it would at start
    assert options.args == ["wsgi:app"]
    module, _, attribute = options.args[0].partition(":")
    assigned = {target.id for node in ast.parse((ROOT / f"{module}.py").read_text()).body
                if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
    assert attribute in assigned
    assert cfg.worker_class_str == "sync"
    assert cfg.workers >= 2
    assert cfg.bind == ["127.0.0.1:8000"]
    assert cfg.forwarded_allow_ips == ["127.0.0.1"]
    assert cfg.max_requests > 0 and 0 < cfg.max_requests_jitter < cfg.max_requests
    assert not cfg.preload_app  # a HUP then loads the new code in the new workers
    service = read_unit("reservations-web")["Service"]
    assert int(service["TimeoutStopSec"]) > cfg.graceful_timeout
    assert service["ExecReload"] == "/bin/kill -s HUP $MAINPID"
    assert service["Type"] == "notify" and service["KillMode"] == "mixed" and service["Restart"] == "on-failure"
    # The heartbeat directory is the unit's runtime directory; the hooks file is this repository's.
    assert cfg.worker_tmp_dir == f"/run/{service['RuntimeDirectory']}"
    assert callable(runpy.run_path(str(in_repo(cfg.config)))["child_exit"])


def test_the_web_units_timeout_covers_the_longest_request_nginx_waits_for():
    argv = exec_start("reservations-web")
    timeout = int(argv[argv.index("--timeout") + 1])
    site = the_site(nginx_tree((DEPLOY / "nginx" / "reservations.conf").read_text()))
    (export_timeout,) = find(location(site, "/finance/export"), "proxy_read_timeout")
    assert seconds(export_timeout[1][0]) == timeout


def test_the_metrics_directory_is_shared_made_at_boot_and_cleared_of_dead_processes():
    multiproc = {name: [v.partition("=")[2] for v in values(name, "Service", "Environment")
                        if v.startswith("PROMETHEUS_MULTIPROC_DIR=")] for name in UNITS}
    assert multiproc["reservations-web"] == multiproc["reservations-scheduler"] == ["/run/reservations/metrics"]
    assert multiproc["reservations-migrate"] == []
    for name in ("reservations-web", "reservations-scheduler"):
        assert "/run/reservations/metrics" in read_unit(name)["Service"]["ReadWritePaths"].split()
    # Neither unit owns it: systemd removes a RuntimeDirectory when its unit stops, under the other's feet.
    assert read_unit("reservations-web")["Service"]["RuntimeDirectory"] == "reservations-web"
    assert "RuntimeDirectory" not in read_unit("reservations-scheduler")["Service"]
    made = [line.split() for line in (DEPLOY / "systemd" / "reservations.tmpfiles.conf").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert ["d", "/run/reservations/metrics", "0750", "reservations", "reservations", "-"] in made
    (clear,) = values("reservations-web", "Service", "ExecStartPre")
    script, directory = shlex.split(clear)[1:]
    assert in_repo(script) == DEPLOY / "clear_dead_metrics.py" and directory == "/run/reservations/metrics"


def test_clear_dead_metrics_removes_only_the_files_of_ended_processes(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True).stdout.strip()
    live = str(os.getpid())
    names = [f"counter_{live}.db", f"histogram_{live}.db", f"counter_{ended}.db", f"histogram_{ended}.db",
             "notes.txt", "counter_unknown.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    result = subprocess.run([sys.executable, str(DEPLOY / "clear_dead_metrics.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{live}.db", f"histogram_{live}.db", "notes.txt", "counter_unknown.db"])
    assert "removed 2 file(s)" in result.stdout
    missing = subprocess.run([sys.executable, str(DEPLOY / "clear_dead_metrics.py"), str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1


@pytest.mark.parametrize(("name", "command"), [("reservations-scheduler", ["jobs", "run"]),
                                               ("reservations-migrate", ["db", "upgrade"])])
def test_the_flask_units_run_real_commands_of_the_apps_cli(name, command, offline_app):
    argv = exec_start(name)
    assert Path(argv[0]).name == "flask"
    assert argv[1:3] == ["--app", "wsgi"] and (ROOT / "wsgi.py").is_file()
    assert argv[3:] == command
    cli = FlaskGroup(create_app=lambda: offline_app, load_dotenv=False, set_debug_flag=False)
    result = CliRunner().invoke(cli, [*argv[3:], "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert re.search(rf"Usage: \S+ {' '.join(command)} ", result.output), result.output


def test_the_scheduler_always_comes_back_and_the_migration_runs_once():
    scheduler = read_unit("reservations-scheduler")["Service"]
    assert scheduler["Restart"] == "always"
    migrate = read_unit("reservations-migrate")
    assert migrate["Service"]["Type"] == "oneshot"
    assert set(migrate["Unit"]["Before"].split()) == {"reservations-web.service", "reservations-scheduler.service"}


# --- env.example ------------------------------------------------------------------------------------------

REFUSALS = textwrap.dedent("""
    import importlib, json, os, sys
    import config
    from reservations import create_app
    answers = []
    for env in json.load(sys.stdin):
        os.environ.clear()
        os.environ.update(env)
        importlib.reload(config)  # the settings are read from the environment when config is imported
        try:
            create_app()
        except config.ConfigError as refused:
            answers.append(sorted(refused.problems))
        else:
            answers.append([])
    print(json.dumps(answers))
""")


def production_refusals(envs: list[dict[str, str]]) -> list[set[str]]:
    """What create_app refuses with each environment, in a fresh interpreter (as gunicorn or flask would)."""
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    result = subprocess.run([sys.executable, "-c", REFUSALS], cwd=ROOT, input=json.dumps([{**base, **e} for e in envs]),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [set(problems) for problems in json.loads(result.stdout.splitlines()[-1])]


def test_env_example_names_every_setting_production_requires_and_placeholders_production_refuses():
    example = read_env_file(DEPLOY / "env.example")
    assert example["APP_ENV"] == "production"
    assert "FLASK_DEBUG" not in example
    waiting = placeholders(example)
    assert waiting == set(FILLED)  # every placeholder has a replacement below, and nothing else is one
    filled = {**example, **FILLED}
    checked = sorted(waiting - UNCHECKED_PLACEHOLDERS)
    nothing_set, as_shipped, replaced, *one_left = production_refusals(
        [{"APP_ENV": "production"}, example, filled, *({**filled, name: example[name]} for name in checked)])
    # Every variable production asks for when nothing is set is in env.example.
    assert nothing_set and nothing_set <= set(example), nothing_set - set(example)
    # As shipped it is refused, naming each checked placeholder (TRUSTED_HOSTS is compared with PUBLIC_BASE_URL's
    # host only once that one is valid: the pass below proves it alone); replaced, it starts.
    assert set(checked) - {"TRUSTED_HOSTS"} <= as_shipped
    assert replaced == set()
    # And each placeholder on its own is enough to refuse it, by name.
    assert dict(zip(checked, one_left, strict=True)) == {name: {name} for name in checked}


def test_env_example_trusts_one_proxy_and_sends_mail_through_a_local_relay():
    example = read_env_file(DEPLOY / "env.example")
    assert example["PROXY_FIX_X_FORWARDED"] == "1"  # nginx on the app server (--forwarded-allow-ips 127.0.0.1)
    assert example["MAIL_BACKEND"] == "smtp" and example["MAIL_SMTP_HOST"] == "127.0.0.1"
    assert example["STRIPE_API_BASE"] == "" and example["STRIPE_JS_URL"] == "https://js.stripe.com/v3/"


# --- nginx ------------------------------------------------------------------------------------------------

NGINX_VALUES = {"X-Forwarded-For": "$proxy_add_x_forwarded_for", "X-Forwarded-Proto": "$scheme",
                "X-Forwarded-Host": "$host", "X-Forwarded-Port": "$server_port", "X-Forwarded-Prefix": None}


def test_nginx_sets_every_forwarded_header_the_apps_proxyfix_trusts(offline_app):
    proxy_fix = offline_app.wsgi_app
    assert isinstance(proxy_fix, ProxyFix)
    trusted = {"X-Forwarded-For": proxy_fix.x_for, "X-Forwarded-Proto": proxy_fix.x_proto,
               "X-Forwarded-Host": proxy_fix.x_host, "X-Forwarded-Port": proxy_fix.x_port,
               "X-Forwarded-Prefix": proxy_fix.x_prefix}
    site = the_site(nginx_tree((DEPLOY / "nginx" / "reservations.conf").read_text()))
    headers = {d[1][0]: d[1][1] for d in find(site, "proxy_set_header")}
    assert headers["Host"] == "$host"
    for header, hops in trusted.items():
        if hops:
            assert headers.get(header) == NGINX_VALUES[header], header
        else:
            assert header not in headers, f"{header} is set but the app does not trust it"
    # nginx inherits proxy_set_header only into locations that set none of their own.
    for node in find(site, "location"):
        assert not find(node[2], "proxy_set_header"), node[1]
        for proxy_pass in find(node[2], "proxy_pass"):
            assert proxy_pass[1] == ["http://reservations_app"]
    assert find(nginx_tree((DEPLOY / "nginx" / "reservations.conf").read_text()), "upstream", "reservations_app")


def test_nginx_keeps_metrics_for_the_scraper_and_passes_healthz():
    site = the_site(nginx_tree((DEPLOY / "nginx" / "reservations.conf").read_text()))
    metrics = location(site, "=", "/metrics")
    rules = [(d[0], d[1][0]) for d in metrics if d[0] in ("allow", "deny")]
    assert rules[-1] == ("deny", "all")
    assert rules[:-1] and all(kind == "allow" and address != "all" for kind, address in rules[:-1])
    healthz = location(site, "=", "/healthz")
    assert find(healthz, "proxy_pass") and not find(healthz, "deny")


def test_nginx_body_limits_static_files_and_redirect_match_the_app(offline_app):
    tree = nginx_tree((DEPLOY / "nginx" / "reservations.conf").read_text())
    site = the_site(tree)
    config = offline_app.config
    body = size(find(site, "client_max_body_size")[0][1][0])
    webhook = size(find(location(site, "/webhooks/"), "client_max_body_size")[0][1][0])
    # A little above the app's limits, so that the app's own 413 page answers.
    assert config["MAX_CONTENT_LENGTH"] < body <= 4 * config["MAX_CONTENT_LENGTH"]
    assert config["WEBHOOK_MAX_BYTES"] < webhook < body
    (alias,) = find(location(site, f"{offline_app.static_url_path}/"), "alias")
    static = in_repo(alias[1][0].rstrip("/"))
    assert static == Path(offline_app.static_folder)
    assert {"site.css", "pay.js"} <= {p.name for p in static.iterdir()}
    assert any(rule.rule.startswith("/finance/export") for rule in offline_app.url_map.iter_rules())
    (http,) = [n[2] for n in find(tree, "server")
               if find(n[2], "listen", "80") and find(n[2], "server_name")[0][1] != ["_"]]
    (redirect,) = find(location(http, "/"), "return")
    assert redirect[1][0] == "301" and redirect[1][1].startswith("https://")
    assert find(location(http, "/.well-known/acme-challenge/"), "root")
    ssl = {d[0]: d[1] for d in site if d[0].startswith("ssl_")}
    assert ssl["ssl_protocols"] == ["TLSv1.2", "TLSv1.3"]
    assert ssl["ssl_certificate"][0].startswith("/etc/letsencrypt/live/")


@pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("openssl"), reason="nginx (or openssl) absent")
def test_nginx_accepts_the_site(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"), "-days", "1"],
                   check=True, capture_output=True, timeout=60)
    site = (DEPLOY / "nginx" / "reservations.conf").read_text()
    site = re.sub(r"/etc/letsencrypt/live/[^;]+/fullchain\.pem", str(tmp_path / "cert.pem"), site)
    site = re.sub(r"/etc/letsencrypt/live/[^;]+/privkey\.pem", str(tmp_path / "key.pem"), site)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "reservations.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/reservations.conf;\n}}\n")
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- PostgreSQL, pgbouncer, Redis ---------------------------------------------------------------------------

def _postgres_binary() -> str | None:
    found = shutil.which("postgres")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return str(candidates[-1]) if candidates else None


def test_postgresql_settings_keep_money_safe_and_connections_enough():
    from apscheduler.executors.pool import ThreadPoolExecutor

    from reservations.jobs import JOBS

    settings = postgresql_settings()
    assert settings["synchronous_commit"] == "on" and settings["fsync"] == "on"
    assert settings["timezone"] == "UTC"
    argv = exec_start("reservations-web")
    workers = int(argv[argv.index("--workers") + 1])
    scheduler_threads = min(ThreadPoolExecutor.__init__.__defaults__[0], len(JOBS))
    # The file's own sum: two app servers, each with its workers twice over during a reload, its scheduler's
    # threads, plus 10 for people and tools.
    assert int(settings["max_connections"]) >= 2 * (2 * workers + scheduler_threads) + 10
    assert settings["statement_timeout"] == "0" and settings["lock_timeout"] == "0"


@pytest.mark.skipif(not _postgres_binary(), reason="no postgres binary to ask for its parameter names")
def test_postgresql_knows_every_setting_named():
    described = subprocess.run([_postgres_binary(), "--describe-config"], capture_output=True, text=True,
                               timeout=60)
    assert described.returncode == 0, described.stderr
    known = {line.split("\t", 1)[0].lower() for line in described.stdout.splitlines()}  # TimeZone, DateStyle
    unknown = {name for name in postgresql_settings() if name.lower() not in known and "." not in name}
    assert unknown == set()  # ("pg_stat_statements.track" belongs to the preloaded extension)


def test_tables_sql_names_real_tables_and_the_append_only_ones():
    sql = (DEPLOY / "postgresql" / "tables.sql").read_text()
    named = set(re.findall(r"(?m)^ALTER TABLE (\w+) SET", sql))
    assert named and named <= set(db.metadata.tables)
    assert {"audit_entries", "ledger_entries", "ledger_settlements", "bookings", "job_runs"} <= named
    assert re.findall(r"(?m)^ALTER ROLE (\w+) SET", sql)


def test_no_session_level_advisory_lock_so_pgbouncer_transaction_mode_is_safe():
    """pgbouncer in transaction mode hands a server connection to another client after COMMIT: a
    session-level advisory lock would stay with that connection. The app uses only transaction-scoped ones."""
    session_level = re.compile(r"pg_(try_)?advisory_(un)?lock(_shared|_all)?\b", re.IGNORECASE)
    transaction_level = re.compile(r"pg_(try_)?advisory_xact_lock(_shared)?\b", re.IGNORECASE)
    offenders, scoped = [], 0
    for path in (ROOT / "reservations").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in session_level.finditer(text)]
        scoped += len(transaction_level.findall(text))
    assert offenders == []
    assert scoped >= 3  # the booking, receipt and ledger locks: the search looks at the right code


def test_redis_keeps_nothing_on_disk_and_bounds_its_memory():
    lines = [line.split(None, 1) for line in (DEPLOY / "redis" / "redis.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    settings = {name: value.strip() for name, value in lines}
    assert settings["save"] == '""' and settings["appendonly"] == "no"
    assert settings["maxmemory-policy"] == "allkeys-lru" and settings["maxmemory"].endswith("mb")
    assert settings["protected-mode"] == "yes" and "requirepass" in settings
